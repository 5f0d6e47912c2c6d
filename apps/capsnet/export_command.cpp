#include "commands.h"

#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/export.h"
#include "capsnet/io/atomic_file.h"

#include <cstdio>
#include <filesystem>
#include <memory>

namespace capsnet::cli {

Runner add_export_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export", "Write a checkpoint's weights as a PyTorch state_dict (the seed's parameter "
                "names) that Python's torch.load reads, with the model configuration as JSON "
                "beside it");
  auto checkpoint = std::make_shared<std::string>();
  auto format = std::make_shared<std::string>("pytorch");
  auto out = std::make_shared<std::string>("model.pth");
  add_checkpoint_option(cmd, *checkpoint);
  cmd->add_option("--format", *format, "export format")
      ->check(CLI::IsMember({"pytorch"}))
      ->capture_default_str();
  cmd->add_option("--out", *out, "weights file; the configuration goes to the same name with .json")
      ->capture_default_str();

  // Every option's storage lives as long as the runner: CLI11 writes into it at
  // parse time, after this function has returned.
  return [checkpoint, format, out]() {
    // The weights and the .json beside them (export_pytorch refuses a .json --out).
    check_not_an_input(*out, {*checkpoint});
    check_not_an_input(std::filesystem::path(*out).replace_extension(".json").string(),
                       {*checkpoint});
    auto loaded = load_checkpoint(*checkpoint);
    loaded.require(Capability::kExport, "capsnet export");
    auto& model = loaded.module();
    const auto config_path = export_pytorch(model, loaded.options, *out, loaded.shape);
    const auto params = export_state_dict(model);
    std::printf("wrote %s (%zu tensors) and %s\n", out->c_str(), params.size(),
                config_path.c_str());
    for (const auto& [name, tensor] : params) {
      std::printf("  %-24s [", name.c_str());
      for (int64_t d = 0; d < tensor.dim(); ++d) {
        std::printf(d ? ", %ld" : "%ld", static_cast<long>(tensor.size(d)));
      }
      std::printf("]\n");
    }
    return 0;
  };
}

} // namespace capsnet::cli
