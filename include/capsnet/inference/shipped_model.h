#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace capsnet {

/// The file name of the model shipped with capsnet: Efficient-CapsNet
/// trained on MNIST (models/README.md says how, and how well).
inline constexpr const char* kShippedModelName = "efficient-capsnet-mnist.pt";

/// Where a program looks for the shipped model, in order: beside the
/// executable in models/ (a build tree, where CMake copies it) and in
/// ../share/capsnet/models/ from the executable's folder (an installed prefix:
/// `cmake --install`, the Debian package). `executable`: the running program's
/// path (default: /proc/self/exe).
std::vector<std::string> shipped_model_candidates(const std::string& executable = "");

/// `given` when it is not empty; otherwise the first shipped model of
/// shipped_model_candidates that exists, after one line on `note` that names
/// it. Throws std::runtime_error naming the places looked at, and --checkpoint,
/// when there is none.
std::string checkpoint_or_shipped(const std::string& given, std::ostream* note,
                                  const std::string& executable = "");

/// `capsnet export --format weights`: the checkpoint's network, options, data
/// shape and training state written to `out` as a checkpoint without the
/// optimizer state (what predict, serve, eval and the figures read, but not
/// --resume), atomically. `out` may not be the checkpoint. Returns one line
/// saying what was written.
std::string export_weights(const std::string& checkpoint, const std::string& out);

} // namespace capsnet
