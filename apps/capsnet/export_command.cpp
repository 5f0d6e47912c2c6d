#include "commands.h"

#include "capsnet/inference/export.h"
#include "capsnet/inference/shipped_model.h"

#include <iostream>
#include <memory>

namespace capsnet::cli {

Runner add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export", "Write a checkpoint's weights as a PyTorch state_dict (the seed's parameter "
                "names) that Python's torch.load reads, with the model configuration as JSON "
                "beside it; or as a capsnet checkpoint of the weights alone (--format weights)");
  auto checkpoint = std::make_shared<std::string>();
  auto format = std::make_shared<std::string>("pytorch");
  auto out = std::make_shared<std::string>("model.pth");
  add_checkpoint_option(cmd, *checkpoint, false);
  cmd->add_option("--format", *format,
                  "pytorch: a state_dict and its .json; weights: a checkpoint without the "
                  "optimizer state, for predict, serve, eval and the figures (not --resume)")
      ->check(CLI::IsMember({"pytorch", "weights"}))
      ->capture_default_str();
  cmd->add_option("--out", *out,
                  "file to write; the pytorch configuration goes to the same name with .json")
      ->capture_default_str();

  // Every option's storage lives as long as the runner: CLI11 writes into it at
  // parse time, after this function has returned.
  return [checkpoint, format, out]() {
    std::cout << (*format == "weights" ? export_weights(*checkpoint, *out)
                                       : export_checkpoint(*checkpoint, *out)) << std::flush;
    return 0;
  };
}

} // namespace capsnet::cli
