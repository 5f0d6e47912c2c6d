#include "capsnet/ops/dynamic_routing.h"

#include "capsnet/ops/squash.h"

#include <c10/util/Exception.h>

#include <stdexcept>

namespace capsnet {

at::Tensor prediction_vectors(const at::Tensor& u, const at::Tensor& weight) {
  TORCH_CHECK(u.dim() == 3, "expected u of shape [B, N_in, D_in], got ", u.sizes());
  TORCH_CHECK(weight.dim() == 4, "expected weight of shape [N_in, N_out, D_in, D_out], got ",
              weight.sizes());
  TORCH_CHECK(u.size(1) == weight.size(0) && u.size(2) == weight.size(2),
              "u ", u.sizes(), " does not match weight ", weight.sizes());
  const auto batch = u.size(0), n_in = weight.size(0), n_out = weight.size(1);
  const auto d_in = weight.size(2), d_out = weight.size(3);
  // One [B, D_in] x [D_in, N_out * D_out] product per child capsule i.
  auto w = weight.permute({0, 2, 1, 3}).reshape({n_in, d_in, n_out * d_out});
  auto u_hat = at::bmm(u.transpose(0, 1), w); // [N_in, B, N_out * D_out]
  return u_hat.view({n_in, batch, n_out, d_out}).transpose(0, 1);
}

at::Tensor dynamic_routing(const at::Tensor& u_hat, int64_t iterations, RoutingSoftmax softmax,
                           const at::Tensor& bias) {
  TORCH_CHECK(u_hat.dim() == 4, "expected u_hat of shape [B, N_in, N_out, D_out], got ",
              u_hat.sizes());
  TORCH_CHECK(iterations >= 1, "expected at least one routing iteration, got ", iterations);
  const int64_t softmax_dim = softmax == RoutingSoftmax::kParents ? 2 : 1;
  auto logits = at::zeros({u_hat.size(0), u_hat.size(1), u_hat.size(2)}, u_hat.options());
  at::Tensor v;
  for (int64_t r = 0; r < iterations; ++r) {
    auto coupling = at::softmax(logits, softmax_dim);
    auto s = (coupling.unsqueeze(-1) * u_hat).sum(1); // [B, N_out, D_out]
    if (bias.defined()) s = s + bias;
    v = squash(s);
    // The last update of b would not be used: skip it.
    if (r + 1 < iterations) logits = logits + (u_hat * v.unsqueeze(1)).sum(-1);
  }
  return v;
}

} // namespace capsnet
