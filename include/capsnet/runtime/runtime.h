#pragma once

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace capsnet {

/// The device for `name`: "cpu", "cuda" or "cuda:N", or "auto" (the first
/// CUDA GPU when LibTorch sees one, else the CPU). Throws
/// std::invalid_argument for an unknown name or a CUDA device that is not there.
c10::Device resolve_device(const std::string& name);

/// Whether this build has capsnet's CUDA kernels (cmake -DCAPSNET_USE_CUDA=ON).
bool built_with_cuda();

/// Sets LibTorch's intra-op thread count, process-wide: `threads`, or for 0
/// every core shared among the `processes_here` processes of a job on this
/// machine (at least one each; Debian's LibTorch defaults to one). The
/// library never calls this itself; programs do, once. Returns the count in use.
int set_thread_count(int threads, int64_t processes_here = 1);

/// The kernel family OpenBLAS runs ("Haswell", "SkylakeX", ...), or "none"
/// when the process's BLAS is not OpenBLAS.
const char* blas_core_name();

} // namespace capsnet
