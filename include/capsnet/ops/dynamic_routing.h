#pragma once

#include "capsnet/io/enum_names.h"

#include <ATen/ATen.h>

#include <string>

namespace capsnet {

/// Which axis the routing softmax normalises the logits b_ij over.
enum class RoutingSoftmax {
  /// Over the parent capsules j, as in Procedure 1 of the paper: each child
  /// capsule distributes one unit of coupling among the parents.
  kParents,
  /// Over the child capsules i, as the seed's `nn.Softmax(dim=1)` does.
  kChildren,
};

CAPSNET_ENUM_NAMES(RoutingSoftmax, "routing softmax",
                   {{RoutingSoftmax::kParents, "parents"}, {RoutingSoftmax::kChildren, "children"}})

/// Prediction vectors u_hat_{j|i} = W_ij u_i (Section 2 of the paper).
/// Shapes: u [B, N_in, D_in], weight [N_in, N_out, D_in, D_out]
///   -> [B, N_in, N_out, D_out].
at::Tensor prediction_vectors(const at::Tensor& u, const at::Tensor& weight);

/// Dynamic routing, Procedure 1 of the paper, in plain ATen ops (the reference
/// implementation). Starts from b_ij = 0 and runs `iterations` rounds of
///   c_i = softmax(b_i); s_j = sum_i c_ij u_hat_{j|i} (+ bias_j);
///   v_j = squash(s_j); b_ij += u_hat_{j|i} . v_j
/// Gradients flow through every iteration.
/// Shapes: u_hat [B, N_in, N_out, D_out], bias [N_out, D_out] or undefined
///   -> v [B, N_out, D_out].
at::Tensor dynamic_routing(const at::Tensor& u_hat, int64_t iterations,
                           RoutingSoftmax softmax = RoutingSoftmax::kParents,
                           const at::Tensor& bias = {});

} // namespace capsnet
