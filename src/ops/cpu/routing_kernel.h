#pragma once

// Plain C++ kernels of the fused dynamic-routing op: no LibTorch here, so the
// file compiles fast and the loops stay visible to the vectoriser.
//
// Every array runs over the child capsules i last ("i fastest"), so that each
// step of the routing is a loop over 1152 contiguous values that vectorises
// whole: the softmax over the parents is elementwise across the J rows of the
// logits, the agreements u_hat . v are J * M scaled row additions, s is J * M
// dot products. (Stored with i first, as in the paper's notation, every
// agreement ends in a horizontal sum of 16 lanes and the softmax runs over
// rows of 10.) The prediction itself runs i by i (each W[i] serves all the
// images) and is transposed into that layout. The caller gives each thread a few images at a time, so that
// their u_hat (737 KB an image on the paper's shapes) stays in cache from
// prediction to the last iteration and W (5.9 MB) is read once for all of them.
//
// Layouts (row-major), per image:
//   u        [N_in, D_in]
//   weight   W [N_in, N_out, D_in, D_out] as the op receives it
//   u_hat    [N_out * D_out, N_in]
//   bias     [N_out, D_out] or null
//   coupling[t] and logits [N_out, N_in]; s[t] and v[t] [N_out, D_out] for t < iterations

#include <cstdint>

namespace capsnet::cpu {

struct RoutingShape {
  int64_t n_in, n_out, d_in, d_out, iterations;
  bool softmax_over_parents;
  double eps; ///< squash epsilon
};

/// The prediction runs over blocks of kPredictRows children i (a cache line
/// of floats): their rows (scratch `rows`, [images, kPredictRows, N_out *
/// D_out]) stay in L1 between the products and the transposition.
constexpr int64_t kPredictRows = 16;

/// Predictions of `images` consecutive images, u [images, N_in, D_in]:
/// u_hat[k][j * M + m][i] = sum_n u[k][i][n] W[i][j][n][m], into u_hat
/// [images, N_out * D_out, N_in]: each W[i] serves all the images, its rows
/// are transposed a block at a time.
void predict(const RoutingShape& shape, int64_t images, const float* u, const float* weight,
             float* rows, float* u_hat);
void predict(const RoutingShape& shape, int64_t images, const double* u, const double* weight,
             double* rows, double* u_hat);

/// Backward of predict: writes grad_u [images, N_in, D_in] and adds
/// sum_k u[k]^T grad_u_hat[k] into grad_weight (W's layout). Scratch:
/// rows [images, kPredictRows, N_out * D_out].
void predict_backward(const RoutingShape& shape, int64_t images, const float* u,
                      const float* weight, const float* grad_u_hat, float* rows, float* grad_u,
                      float* grad_weight);
void predict_backward(const RoutingShape& shape, int64_t images, const double* u,
                      const double* weight, const double* grad_u_hat, double* rows,
                      double* grad_u, double* grad_weight);

/// Forward of one image: fills coupling, s and v of every iteration; v of the
/// last iteration is the output. Scratch: logits [N_out + 1, N_in].
void routing_forward(const RoutingShape& shape, const float* u_hat, const float* bias,
                     float* logits, float* coupling, float* s, float* v);
void routing_forward(const RoutingShape& shape, const double* u_hat, const double* bias,
                     double* logits, double* coupling, double* s, double* v);

/// Backward of one image. grad_v: [N_out, D_out] for the output. Writes
/// dL/du_hat into grad_u_hat (u_hat's layout); adds into grad_bias (may be
/// null). Scratch: grad_logits [N_out + 1, N_in], grad_coupling [N_out, N_in],
/// grad_v_t and grad_s [N_out, D_out].
void routing_backward(const RoutingShape& shape, const float* u_hat, const float* coupling,
                      const float* s, const float* v, const float* grad_v, float* grad_u_hat,
                      float* grad_bias, float* grad_logits, float* grad_coupling,
                      float* grad_v_t, float* grad_s);
void routing_backward(const RoutingShape& shape, const double* u_hat, const double* coupling,
                      const double* s, const double* v, const double* grad_v,
                      double* grad_u_hat, double* grad_bias, double* grad_logits,
                      double* grad_coupling, double* grad_v_t, double* grad_s);

} // namespace capsnet::cpu
