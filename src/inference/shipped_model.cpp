#include "capsnet/inference/shipped_model.h"

#include "capsnet/engine/checkpoint.h"
#include "capsnet/io/atomic_file.h"

#include <filesystem>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace capsnet {

namespace fs = std::filesystem;

std::vector<std::string> shipped_model_candidates(const std::string& executable) {
  std::error_code error;
  fs::path program = executable.empty() ? fs::read_symlink("/proc/self/exe", error)
                                        : fs::path(executable);
  if (error || program.empty()) return {};
  const auto folder = program.parent_path();
  return {(folder / "models" / kShippedModelName).lexically_normal().string(),
          (folder / ".." / "share" / "capsnet" / "models" / kShippedModelName)
              .lexically_normal()
              .string()};
}

std::string checkpoint_or_shipped(const std::string& given, std::ostream* note,
                                  const std::string& executable) {
  if (!given.empty()) return given;
  const auto candidates = shipped_model_candidates(executable);
  for (const auto& path : candidates) {
    std::error_code error;
    if (!fs::is_regular_file(path, error)) continue;
    if (note) *note << "no --checkpoint given: using the shipped model " << path << "\n";
    return path;
  }
  std::string looked;
  for (const auto& path : candidates) looked += (looked.empty() ? "" : ", ") + path;
  throw std::runtime_error(
      "no --checkpoint given, and the shipped model " + std::string(kShippedModelName) +
      " is not where this program looks (" + (looked.empty() ? "its own path is unknown" : looked) +
      "): give --checkpoint RUN_DIR/best.pt (a run of capsnet train), or install capsnet with "
      "its models/ folder");
}

std::string export_weights(const std::string& checkpoint, const std::string& out) {
  check_not_an_input(out, {checkpoint});
  auto loaded = load_checkpoint(checkpoint);
  save_checkpoint(out, loaded.module(), nullptr, loaded.options, loaded.shape, loaded.state);
  int64_t parameters = 0;
  for (const auto& p : loaded.module().parameters()) parameters += p.numel();
  std::ostringstream text;
  text << "wrote " << out << ": the weights of " << checkpoint << " (" << loaded.options.model_name
       << ", " << parameters << " parameters, epoch " << loaded.state.epoch
       << ") without the optimizer state, " << fs::file_size(out) / 1024 << " KiB (the checkpoint: "
       << fs::file_size(checkpoint) / 1024 << " KiB)\n";
  return text.str();
}

} // namespace capsnet
