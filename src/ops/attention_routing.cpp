#include "capsnet/ops/attention_routing.h"
#include "op_kernels.h"

#include <c10/util/Exception.h>

#include <cmath>

namespace capsnet {

at::Tensor efficient_squash_composite(const at::Tensor& s, int64_t dim, double eps) {
  const auto norm = s.norm(2, dim, /*keepdim=*/true);
  return (1 - 1 / (norm.exp() + eps)) * s / (norm + eps);
}

std::tuple<at::Tensor, at::Tensor> attention_routing_composite(
    const at::Tensor& u_hat, const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(u_hat.dim() == 4, "expected u_hat of shape [B, N_in, N_out, D], got ",
              u_hat.sizes());
  const bool has_bias = bias.has_value() && bias->defined();
  TORCH_CHECK(!has_bias || bias->sizes() == u_hat.sizes().slice(1, 2),
              "expected bias of shape [", u_hat.size(1), ", ", u_hat.size(2), "], got ",
              bias->sizes());
  const auto dim = static_cast<double>(u_hat.size(3));
  const auto total = u_hat.sum(1, /*keepdim=*/true);                   // [B, 1, N_out, D]
  const auto logits = (u_hat * total).sum(-1) / std::sqrt(dim);        // [B, N_in, N_out]
  const auto c = at::softmax(logits, /*dim=*/2);
  const auto weights = has_bias ? c + *bias : c;
  const auto s = (weights.unsqueeze(-1) * u_hat).sum(1);              // [B, N_out, D]
  return {efficient_squash_composite(s, -1, kEfficientSquashEps), c};
}

} // namespace capsnet
