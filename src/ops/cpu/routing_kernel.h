#pragma once

// Plain C++ kernels of the fused dynamic-routing op: no LibTorch here, so the
// file compiles fast and the loops stay visible to the vectoriser. Every
// function handles one image b; the caller parallelises over the batch.
//
// Layouts (row-major, contiguous):
//   u      [N_in, D_in]              one image's primary capsules
//   weight [N_in, N_out, D_in, D_out]
//   bias   [N_out, D_out] or null
//   u_hat  [N_in, N_out, D_out]      scratch, recomputed in backward
//   coupling[t] [N_in, N_out], s[t] and v[t] [N_out, D_out] for t < iterations

#include <cstdint>

namespace capsnet::cpu {

struct RoutingShape {
  int64_t n_in, n_out, d_in, d_out, iterations;
  bool softmax_over_parents;
  double eps; ///< squash epsilon
};

/// Forward of one image: fills u_hat (scratch), coupling, s and v of every
/// iteration; v of the last iteration is the output. logits: [N_in, N_out] scratch.
void routing_forward(const RoutingShape& shape, const float* u, const float* weight,
                     const float* bias, float* u_hat, float* logits, float* coupling, float* s,
                     float* v);
void routing_forward(const RoutingShape& shape, const double* u, const double* weight,
                     const double* bias, double* u_hat, double* logits, double* coupling,
                     double* s, double* v);

/// Backward of one image. grad_v: [N_out, D_out] for the output. Writes
/// grad_u [N_in, D_in]; adds into grad_weight and grad_bias (may be null).
/// Scratch: u_hat and grad_u_hat [N_in, N_out, D_out], grad_logits and
/// grad_coupling [N_in, N_out], grad_v_t and grad_s [N_out, D_out].
void routing_backward(const RoutingShape& shape, const float* u, const float* weight,
                      const float* coupling, const float* s, const float* v, const float* grad_v,
                      float* grad_u, float* grad_weight, float* grad_bias, float* u_hat,
                      float* grad_u_hat, float* grad_logits, float* grad_coupling,
                      float* grad_v_t, float* grad_s);
void routing_backward(const RoutingShape& shape, const double* u, const double* weight,
                      const double* coupling, const double* s, const double* v,
                      const double* grad_v, double* grad_u, double* grad_weight,
                      double* grad_bias, double* u_hat, double* grad_u_hat, double* grad_logits,
                      double* grad_coupling, double* grad_v_t, double* grad_s);

} // namespace capsnet::cpu
