#include "op_kernels.h"

namespace capsnet {

at::Tensor squash_composite(const at::Tensor& s, int64_t dim, double eps) {
  auto squared_norm = s.pow(2).sum(dim, /*keepdim=*/true);
  return squared_norm / (1 + squared_norm) * s / (squared_norm + eps).sqrt();
}

} // namespace capsnet
