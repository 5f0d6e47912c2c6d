#pragma once

#include "capsnet/ops/dynamic_routing.h"
#include "capsnet/ops/fused_routing.h"

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace capsnet {

struct DigitCapsulesOptions {
  DigitCapsulesOptions(int64_t in_capsules, int64_t out_capsules, int64_t in_dim,
                       int64_t out_dim)
      : in_capsules_(in_capsules), out_capsules_(out_capsules), in_dim_(in_dim),
        out_dim_(out_dim) {}
  TORCH_ARG(int64_t, in_capsules);
  TORCH_ARG(int64_t, out_capsules);
  TORCH_ARG(int64_t, in_dim);
  TORCH_ARG(int64_t, out_dim);
  /// r in Procedure 1: 3 in the paper.
  TORCH_ARG(int64_t, routing_iterations) = 3;
  TORCH_ARG(RoutingSoftmax, softmax) = RoutingSoftmax::kParents;
  /// Adds a learned bias to s_j before squash (as the authors' code does).
  TORCH_ARG(bool, bias) = false;
  /// W_ij ~ N(0, init_std^2). The seed uses torch.randn, i.e. 1.0.
  TORCH_ARG(double, init_std) = 0.01;
  /// A fixed factor on the input capsules u (so on u_hat = W u and s_j):
  /// CapsNetImpl::calibrate's. It also scales the effect of each Adam step on
  /// W_ij, which a learned factor folded into W could not.
  TORCH_ARG(double, input_scale) = 1.0;
  /// How routing is computed; both give the same function.
  TORCH_ARG(RoutingImpl, impl) = RoutingImpl::kFused;
};

/// Fully connected capsule layer with dynamic routing (DigitCaps, Section 4).
/// Parameters: weight W [N_in, N_out, D_in, D_out], optional bias [N_out, D_out].
/// Shapes: u [B, N_in, D_in] -> v [B, N_out, D_out].
struct DigitCapsulesImpl : torch::nn::Module {
  explicit DigitCapsulesImpl(const DigitCapsulesOptions& options);
  void reset();
  at::Tensor forward(const at::Tensor& input);

  DigitCapsulesOptions options;
  at::Tensor weight;
  at::Tensor bias;
};
TORCH_MODULE(DigitCapsules);

} // namespace capsnet
