#pragma once

// CUDA kernels of the fused dynamic-routing op: the routing iterations of
// every image of a batch, one thread block per image, forward and backward.
// Plain declarations (no CUDA or LibTorch types) so that fused_routing.cpp
// compiles with any C++ compiler. All pointers are device pointers on CUDA
// device `device`; the kernels run under a guard for that device on its
// current stream (c10::cuda::getCurrentCUDAStream), so they order correctly
// with LibTorch's own work, side streams and c10d's NCCL streams, and every
// launch is checked (C10_CUDA_KERNEL_LAUNCH_CHECK). Float only.
//
// Layouts, for `images` images (see cpu/routing_kernel.h for the math):
//   u_hat, grad_u_hat  [N_in, images, N_out * D_out]
//   coupling           [images, iterations, N_in, N_out]
//   s, v               [images, iterations, N_out, D_out]
//   grad_v             [images, N_out, D_out]
//   logits, grad_logits, grad_coupling  [images, N_in, N_out] scratch
//   bias, grad_bias    [N_out, D_out] or null; grad_bias is added into (atomically)

#include "../cpu/routing_kernel.h"

#include <cstdint>

namespace capsnet::cuda {

void routing_forward(int device, const cpu::RoutingShape& shape, int64_t images,
                     const float* u_hat, const float* bias, float* logits, float* coupling,
                     float* s, float* v);

void routing_backward(int device, const cpu::RoutingShape& shape, int64_t images,
                      const float* u_hat, const float* coupling, const float* s, const float* v,
                      const float* grad_v, float* grad_u_hat, float* grad_bias,
                      float* grad_logits, float* grad_coupling);

} // namespace capsnet::cuda
