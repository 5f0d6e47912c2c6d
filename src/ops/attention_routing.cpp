#include "capsnet/ops/attention_routing.h"

#include <c10/util/Exception.h>

#include <cmath>

namespace capsnet {

at::Tensor efficient_squash(const at::Tensor& s, int64_t dim, double eps) {
  const auto norm = s.norm(2, dim, /*keepdim=*/true);
  return (1 - 1 / (norm.exp() + eps)) * s / (norm + eps);
}

at::Tensor attention_routing(const at::Tensor& u_hat, const at::Tensor& bias,
                             at::Tensor* coupling) {
  TORCH_CHECK(u_hat.dim() == 4, "expected u_hat of shape [B, N_in, N_out, D], got ",
              u_hat.sizes());
  TORCH_CHECK(!bias.defined() || bias.sizes() == u_hat.sizes().slice(1, 2),
              "expected bias of shape [", u_hat.size(1), ", ", u_hat.size(2), "], got ",
              bias.sizes());
  const auto dim = static_cast<double>(u_hat.size(3));
  const auto total = u_hat.sum(1, /*keepdim=*/true);                   // [B, 1, N_out, D]
  const auto logits = (u_hat * total).sum(-1) / std::sqrt(dim);        // [B, N_in, N_out]
  auto c = at::softmax(logits, /*dim=*/2);
  if (coupling) *coupling = c;
  if (bias.defined()) c = c + bias;
  return efficient_squash((c.unsqueeze(-1) * u_hat).sum(1)); // [B, N_out, D]
}

} // namespace capsnet
