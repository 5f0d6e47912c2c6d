#pragma once

// What `capsnet --version` prints: the build and the machine it runs on.

#include <string>

namespace capsnet {

/// The parts of a build that CMake options leave in or out, beyond what the
/// library knows of itself (Gloo, NCCL, CUDA): the command line's figures
/// (cairo) and serve (cpp-httplib).
struct BuildParts {
  bool figures = false; ///< the figures (cairo) are built in
  bool serve = false;   ///< `capsnet serve` (cpp-httplib) is built in
};

/// Lines, each ending in a newline: capsnet's version and commit, the LibTorch
/// it was built against (and whether LibTorch sees a GPU), the CPU with the
/// instruction sets capsnet's kernels use and the environment's limits, the
/// BLAS, and which parts the build has.
std::string version_text(const BuildParts& parts);

} // namespace capsnet
