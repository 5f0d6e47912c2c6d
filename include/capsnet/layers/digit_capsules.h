#pragma once

#include "capsnet/ops/dynamic_routing.h"
#include "capsnet/ops/fused_routing.h"

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

namespace capsnet {

/// The sizes and settings of a DigitCapsules layer.
struct DigitCapsulesOptions {
  /// The four sizes, each option below at its default.
  DigitCapsulesOptions(int64_t in_capsules, int64_t out_capsules, int64_t in_dim,
                       int64_t out_dim)
      : in_capsules_(in_capsules), out_capsules_(out_capsules), in_dim_(in_dim),
        out_dim_(out_dim) {}
  /// N_in, the input (child) capsules: 1152 in the paper.
  TORCH_ARG(int64_t, in_capsules);
  /// N_out, the output (parent) capsules: one per class.
  TORCH_ARG(int64_t, out_capsules);
  /// D_in, each input capsule's dimensions: 8 in the paper.
  TORCH_ARG(int64_t, in_dim);
  /// D_out, each output capsule's dimensions: 16 in the paper.
  TORCH_ARG(int64_t, out_dim);
  /// r in Procedure 1: 3 in the paper.
  TORCH_ARG(int64_t, routing_iterations) = 3;
  /// Which axis the routing softmax normalises over.
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
  /// Checks `options` and makes the parameters (reset()).
  explicit DigitCapsulesImpl(const DigitCapsulesOptions& options);
  /// Registers weight, drawn from N(0, init_std^2), and with options.bias a zero bias.
  void reset();
  /// Routes u [B, N_in, D_in] to v [B, N_out, D_out] (Procedure 1).
  at::Tensor forward(const at::Tensor& input);

  DigitCapsulesOptions options; ///< the layer's sizes and settings
  at::Tensor weight;            ///< W [N_in, N_out, D_in, D_out]
  at::Tensor bias;              ///< [N_out, D_out]; undefined without options.bias
};
TORCH_MODULE(DigitCapsules);

} // namespace capsnet
