#pragma once

#include "capsnet/ops/dynamic_routing.h"

#include <ATen/ATen.h>

namespace capsnet {

/// Which implementation runs the digit capsules' routing.
enum class RoutingImpl {
  kFused,     ///< fused_dynamic_routing: one hand-written CPU kernel, forward and backward
  kReference, ///< dynamic_routing(prediction_vectors(...)) in plain ATen ops
};

CAPSNET_ENUM_NAMES(RoutingImpl, "routing implementation",
                   {{RoutingImpl::kFused, "fused"}, {RoutingImpl::kReference, "reference"}})

/// u_hat = W u and the iterations of Procedure 1 in one autograd op, with a
/// hand-written backward: the same function as
///   dynamic_routing(prediction_vectors(u, weight), iterations, softmax, bias)
/// computed on the CPU a few images at a time per thread (W read once for
/// them, their u_hat kept in cache with the child capsules i running fastest,
/// so that every step of the routing is a vector loop over i; see
/// src/ops/cpu/routing_kernel.h), u_hat never stored for the batch
/// (recomputed in backward); only the coupling coefficients, s and v of each
/// iteration are kept for backward.
/// CPU (float or double) and, in CUDA builds, CUDA (float; u_hat by batched
/// GEMMs, one thread block per image, src/ops/cuda/routing_cuda.cu). Once
/// differentiable.
/// Shapes: u [B, N_in, D_in], weight [N_in, N_out, D_in, D_out],
///   bias [N_out, D_out] or undefined -> v [B, N_out, D_out].
/// Whether fused_dynamic_routing has a kernel for `device` in this build: the
/// CPU always, CUDA when built with -DCAPSNET_USE_CUDA=ON.
bool fused_routing_supports(const c10::Device& device);

at::Tensor fused_dynamic_routing(const at::Tensor& u, const at::Tensor& weight,
                                 const at::Tensor& bias, int64_t iterations,
                                 RoutingSoftmax softmax = RoutingSoftmax::kParents);

} // namespace capsnet
