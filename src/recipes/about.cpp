#include "capsnet/recipes/about.h"

#include "capsnet/dist/process_group.h"
#include "capsnet/engine/graph.h"
#include "capsnet/ops/cpu_features.h"
#include "capsnet/runtime/runtime.h"
#include "capsnet/version.h"

#include <torch/cuda.h>
#include <torch/version.h>

namespace capsnet {

namespace {
std::string yes_no(const char* name, bool present) {
  return std::string(name) + (present ? " yes" : " no");
}
} // namespace

std::string version_text(const BuildParts& parts) {
  const auto& cpu = cpu_features();
  const std::string blas = blas_core_name();
  const std::string gpus = torch::cuda::is_available()
                               ? std::to_string(torch::cuda::device_count()) + " CUDA device(s) visible"
                               : "no CUDA device visible";
  std::string text = std::string("capsnet ") + version() + " (commit " + build_commit() + ")\n";
  text += std::string("LibTorch ") + TORCH_VERSION + ", " + gpus + "\n";
  text += "CPU: " + cpu.describe() + "; capsnet's kernels: " + enum_name(kernel_isa()) + "\n";
  text += "BLAS: " + (blas == "none" ? std::string("not OpenBLAS") : "OpenBLAS, " + blas + " kernels") +
          "\n";
  text += "parts: " + yes_no("figures", parts.figures) + ", " + yes_no("serve", parts.serve) +
          ", " + yes_no("Gloo", dist::backend_available(dist::Backend::kGloo)) + ", " +
          yes_no("NCCL", dist::backend_available(dist::Backend::kNccl)) + ", " +
          yes_no("CUDA kernels", built_with_cuda()) + ", " +
          yes_no("CUDA graphs", cuda_graphs_built()) + "\n";
  return text;
}

} // namespace capsnet
