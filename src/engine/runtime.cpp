#include "capsnet/engine/runtime.h"

#include "capsnet/engine/options.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

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
                                                     "against a CUDA LibTorch, see README")) +
          "); use --device cpu");
    }
    if (device.has_index() && static_cast<size_t>(device.index()) >= count) {
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

int configure_runtime(int threads) {
  const int count = resolve_threads(threads);
  at::set_num_threads(count);
#if defined(__GLIBC__)
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, std::numeric_limits<int>::max());
  mallopt(M_TOP_PAD, 64 << 20);
#endif
  return count;
}

const char* blas_core_name() {
  return openblas_get_corename ? openblas_get_corename() : "none";
}

void ensure_fast_blas(char** argv) {
#if defined(__x86_64__) && defined(__linux__)
  if (std::getenv("OPENBLAS_CORETYPE") || !openblas_get_corename) return;
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
  const char* core = openblas_get_corename();
  // The SSE-era kernels OpenBLAS falls back to for a CPU it does not know.
  static const char* const kGeneric[] = {"prescott", "core2", "penryn", "dunnington", "nehalem",
                                         "atom", "northwood", "banias", "katmai", "coppermine",
                                         "athlon", "opteron", "barcelona", "unknown"};
  bool generic = false;
  for (const char* name : kGeneric) generic = generic || strcasecmp(core, name) == 0;
  if (!generic) return;
  std::fprintf(stderr,
               "capsnet: OpenBLAS picked its generic '%s' kernel on this AVX2 CPU; restarting "
               "with OPENBLAS_CORETYPE=Haswell (set OPENBLAS_CORETYPE to choose yourself)\n",
               core);
  setenv("OPENBLAS_CORETYPE", "Haswell", 1);
  execv("/proc/self/exe", argv);
  std::perror("capsnet: re-exec failed; continuing with the generic kernel");
#else
  (void)argv;
#endif
}

} // namespace capsnet
