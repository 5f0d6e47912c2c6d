#pragma once

// Plain C++ kernels of the fused dynamic-routing op: no LibTorch here, so the
// file compiles fast and the loops stay visible to the vectoriser. The
// caller gives each thread a few images at a time, so that their u_hat (737 KB
// an image on the paper's shapes) stays in cache from prediction to the last
// iteration and W (5.9 MB) is read once for all of them. (On a GPU, u_hat = W u is a batched
// GEMM over the whole batch and the CUDA kernels run the iterations.)
//
// Layouts (row-major):
//   u_hat   row i of one image: [N_out * D_out] contiguous, rows row_stride apart
//           (the caller's [N_in, images, N_out * D_out] chunk)
//   bias    [N_out, D_out] or null
//   coupling[t] [N_in, N_out], s[t] and v[t] [N_out, D_out] for t < iterations

#include <cstdint>

namespace capsnet::cpu {

struct RoutingShape {
  int64_t n_in, n_out, d_in, d_out, iterations;
  bool softmax_over_parents;
  double eps; ///< squash epsilon
};

/// Predictions of `images` consecutive images:
/// u_hat[k][i][j * M + m] = sum_n u[k][i][n] w_rows[i][n][j * M + m], with u [images, N_in,
/// D_in], w_rows [N_in, D_in, N_out * D_out] (W [N_in, N_out, D_in, D_out] permuted) and
/// u_hat [images, N_in, N_out * D_out], all contiguous.
void predict(const RoutingShape& shape, int64_t images, const float* u, const float* w_rows,
             float* u_hat);
void predict(const RoutingShape& shape, int64_t images, const double* u, const double* w_rows,
             double* u_hat);

/// Backward of predict: writes grad_u [images, N_in, D_in] and adds
/// sum_k u[k]^T grad_u_hat[k] into grad_w_rows (w_rows' layout).
void predict_backward(const RoutingShape& shape, int64_t images, const float* u,
                      const float* w_rows, const float* grad_u_hat, float* grad_u,
                      float* grad_w_rows);
void predict_backward(const RoutingShape& shape, int64_t images, const double* u,
                      const double* w_rows, const double* grad_u_hat, double* grad_u,
                      double* grad_w_rows);

/// Forward of one image: fills coupling, s and v of every iteration; v of the
/// last iteration is the output. logits: [N_in, N_out] scratch.
void routing_forward(const RoutingShape& shape, const float* u_hat, int64_t row_stride,
                     const float* bias, float* logits, float* coupling, float* s, float* v);
void routing_forward(const RoutingShape& shape, const double* u_hat, int64_t row_stride,
                     const double* bias, double* logits, double* coupling, double* s, double* v);

/// Backward of one image. grad_v: [N_out, D_out] for the output. Writes
/// dL/du_hat into grad_u_hat (u_hat's layout); adds into grad_bias (may be
/// null). Scratch: grad_logits and grad_coupling [N_in, N_out], grad_v_t and
/// grad_s [N_out, D_out].
void routing_backward(const RoutingShape& shape, const float* u_hat, int64_t row_stride,
                      const float* coupling, const float* s, const float* v, const float* grad_v,
                      float* grad_u_hat, float* grad_bias, float* grad_logits,
                      float* grad_coupling, float* grad_v_t, float* grad_s);
void routing_backward(const RoutingShape& shape, const double* u_hat, int64_t row_stride,
                      const double* coupling, const double* s, const double* v,
                      const double* grad_v, double* grad_u_hat, double* grad_bias,
                      double* grad_logits, double* grad_coupling, double* grad_v_t,
                      double* grad_s);

} // namespace capsnet::cpu
