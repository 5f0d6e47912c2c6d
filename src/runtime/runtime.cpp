#include "capsnet/runtime/runtime.h"

#include "capsnet/registry/options.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>


// Present when OpenBLAS is the process's BLAS (Debian: libblas.so.3 alternative).
extern "C" char* openblas_get_corename() __attribute__((weak));

namespace capsnet {

c10::Device resolve_device(const std::string& name) {
  if (name == "auto") {
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  }
  if (name != "cpu" && name.rfind("cuda", 0) != 0) {
    throw std::invalid_argument("unknown device '" + name + "': expected auto, cpu or cuda[:N]");
  }
  c10::Device device(c10::kCPU);
  try {
    device = c10::Device(name);
  } catch (const c10::Error&) {
    throw std::invalid_argument("unknown device '" + name + "': expected auto, cpu or cuda[:N]");
  }
  if (device.is_cuda()) {
    const auto count = torch::cuda::device_count();
    if (count == 0) {
      throw std::invalid_argument(
          "--device " + name + ": LibTorch sees no CUDA GPU (" +
          (torch::cuda::is_available() ? std::string("none found")
                                       : std::string("this LibTorch is a CPU build; build "
                                                     "against a CUDA LibTorch, see docs/gpu.md")) +
          "); use --device cpu");
    }
    // device_count() is size_t in LibTorch 1.13 and c10::DeviceIndex in 2.x.
    if (device.has_index() && static_cast<int64_t>(device.index()) >= static_cast<int64_t>(count)) {
      throw std::invalid_argument("--device " + name + ": there are only " +
                                  std::to_string(count) + " CUDA devices");
    }
    if (!device.has_index()) device = c10::Device(c10::kCUDA, 0);
  }
  return device;
}

bool built_with_cuda() {
#ifdef CAPSNET_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int set_thread_count(int threads, int64_t processes_here) {
  const int share = static_cast<int>(std::max<int64_t>(1, processes_here));
  const int count = threads > 0 ? resolve_threads(threads) : std::max(1, resolve_threads(0) / share);
  at::set_num_threads(count);
  return count;
}

const char* blas_core_name() {
  return openblas_get_corename ? openblas_get_corename() : "none";
}

} // namespace capsnet
