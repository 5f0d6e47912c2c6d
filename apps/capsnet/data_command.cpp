// capsnet data export-folder: a registered data set written as a folder tree.
#include "commands.h"

#include "capsnet/data/folder_export.h"
#include "capsnet/data/registry.h"

#include <unistd.h>

#include <iostream>
#include <memory>

namespace capsnet::cli {

namespace {

int run_export(FolderExportOptions options) {
  options.log = &std::cout;
  options.terminal = ::isatty(STDOUT_FILENO); // progress rewritten in place
  export_folder(options);
  std::cout << "train on it with: capsnet train --dataset folder --data " << options.out
            << std::endl;
  return 0;
}

}  // namespace

Runner add_data_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("data", "Work with data sets");
  cmd->require_subcommand(1);
  auto* exp = cmd->add_subcommand(
      "export-folder",
      "Write a registered data set as a folder tree, OUT/train/CLASS/NNNNN.png "
      "and OUT/test/CLASS/NNNNN.png (NNNNN: the index in the split), the layout "
      "--dataset folder reads");
  auto f = std::make_shared<FolderExportOptions>();
  std::vector<std::string> exportable;
  for (const auto& info : registered_datasets()) {
    if (!info.folder && info.labels_per_image == 1) exportable.push_back(info.name);
  }
  exp->add_option("--dataset", f->dataset, "data set to write")
      ->check(CLI::IsMember(exportable))
      ->capture_default_str();
  add_data_option(exp, f->data_dir, "its directory (default: the data set's own)");
  exp->add_option("--out", f->out, "the folder to write (new or empty)")->required();
  exp->add_option("--limit", f->limit, "the first N training images (0: all)")
      ->check(CLI::NonNegativeNumber);
  exp->add_option("--test-limit", f->test_limit, "the first N test images (0: all)")
      ->check(CLI::NonNegativeNumber);
  exp->add_option("--format", f->format, "png (lossless: the same pixels) or jpeg (quality 95)")
      ->check(CLI::IsMember({"png", "jpeg"}))
      ->capture_default_str();
  exp->add_flag("--force", f->force, "write into a folder that is not empty");
  return [f]() { return run_export(*f); };
}

}  // namespace capsnet::cli
