// capsnet data export-folder: a registered data set written as a folder tree.
#include "commands.h"

#include "capsnet/data/registry.h"
#include "capsnet/engine/runtime.h"
#include "capsnet/io/atomic_file.h"
#include "capsnet/viz/image.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

namespace capsnet::cli {

namespace {

namespace fs = std::filesystem;

struct ExportFlags {
  std::string dataset = "mnist";
  std::string data_dir;
  std::string out;
  int64_t limit = 0, test_limit = 0;
  std::string format = "png";
  bool force = false;
};

// The folder a class's pictures go to: its name, made safe for a file system.
std::string folder_name(const DatasetInfo& info, int64_t k) {
  std::string name =
      k < static_cast<int64_t>(info.class_names.size()) ? info.class_names[k] : std::to_string(k);
  for (auto& c : name) {
    if (c == '/' || c == '\0') c = '-';
  }
  return name;
}

// Writes `split` as OUT/SPLIT/CLASS/NNNNN.EXT, NNNNN the example's index in
// the split (so that a file names the IDX image it came from).
int64_t export_split(const DatasetInfo& info, const ExportFlags& f, Split split) {
  const auto name = split == Split::kTrain ? "train" : "test";
  auto data =
      load_dataset(f.data_dir, split, info.name, split == Split::kTrain ? f.limit : f.test_limit);
  const auto source = make_source(info, data, split, 0, false, c10::Device(c10::kCPU));
  const int64_t n = source->size(), chunk = 1000;
  const bool terminal = ::isatty(STDOUT_FILENO); // progress rewritten in place
  int64_t written = 0;
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const auto batch =
        source->get(at::arange(begin, std::min(n, begin + chunk), at::kLong), nullptr);
    for (int64_t b = 0; b < batch.size(); ++b) {
      const auto dir = fs::path(f.out) / name / folder_name(info, batch.labels[b].item<int64_t>());
      fs::create_directories(dir);
      char file[32];
      std::snprintf(file, sizeof file, "%05lld.%s", static_cast<long long>(begin + b),
                    f.format == "png" ? "png" : "jpg");
      // Plain writes: a new tree of many small files, where a rename and an
      // fsync per file (write_png) would take most of the time.
      const auto picture = tensor_picture(batch.images[b]);
      const auto bytes = f.format == "png" ? encode_png(picture) : encode_jpeg(picture, 95);
      std::ofstream stream(dir / file, std::ios::binary);
      stream.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      if (!stream) throw WriteError((dir / file).string() + ": cannot be written");
      ++written;
    }
    if (terminal) std::cout << "\r" << name << ": " << written << "/" << n << std::flush;
  }
  std::cout << (terminal ? "\r" : "") << name << ": " << written << " pictures in "
            << (fs::path(f.out) / name).string() << std::endl;
  return written;
}

int run_export(const ExportFlags& f) {
  const auto& info = dataset_info(f.dataset);
  if (info.folder) {
    throw std::invalid_argument(
        "--dataset folder is a folder already; export-folder writes the "
        "other data sets as folders");
  }
  if (info.labels_per_image != 1) {
    throw std::invalid_argument(info.name + " has " + std::to_string(info.labels_per_image) +
                                " labels per image, and a folder tree holds one class per "
                                "picture; export another data set");
  }
  std::error_code ec;
  if (fs::exists(f.out, ec) && (!fs::is_directory(f.out, ec) || !fs::is_empty(f.out, ec)) &&
      !f.force) {
    throw std::invalid_argument(f.out +
                                " exists and is not an empty folder; choose another "
                                "--out, or pass --force to write into it");
  }
  fs::create_directories(f.out);
  export_split(info, f, Split::kTrain);
  export_split(info, f, Split::kTest);
  std::cout << "train on it with: capsnet train --dataset folder --data " << f.out << std::endl;
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
  auto f = std::make_shared<ExportFlags>();
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
