#include "routing_kernel.h"

#include "isa_dispatch.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace capsnet::cpu {

namespace {

// Everything below is inlined into the exported functions, compiled for
// AVX-512, AVX2 and the baseline ISA (isa_dispatch.h).

// exp(x) in plain arithmetic that vectorises (std::exp is a call per element):
// 2^n e^r with |r| <= ln(2)/2, e^r by Cephes' degree-6 expf polynomial
// (relative error under 2 ulp), clamped to [-87, 88] (softmax arguments are <= 0).
CAPSNET_INLINE float exp_vectorizable(float x_in) {
  // NaN in, NaN out; the arithmetic below runs on 0 instead, so that the
  // float-to-int conversion of n is always defined (UBSan caught a NaN there
  // in a diverged run).
  const bool nan = x_in != x_in;
  const float x = nan ? 0.0f : std::min(std::max(x_in, -87.0f), 88.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  float r = x - n * 0.693359375f;
  r -= n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return nan ? x_in : p * scale;
}
CAPSNET_INLINE double exp_vectorizable(double x) { return std::exp(x); }

template <typename T>
CAPSNET_INLINE void softmax(const RoutingShape& sh, const T* logits, T* c) {
  const int64_t I = sh.n_in, J = sh.n_out;
  if (sh.softmax_over_parents) {
    for (int64_t i = 0; i < I; ++i) {
      const T* row = logits + i * J;
      T* out = c + i * J;
      T top = row[0];
      for (int64_t j = 1; j < J; ++j) top = std::max(top, row[j]);
      T sum = 0;
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < J; ++j) {
        out[j] = exp_vectorizable(row[j] - top);
        sum += out[j];
      }
      const T inv = 1 / sum;
#pragma omp simd
      for (int64_t j = 0; j < J; ++j) out[j] *= inv;
    }
    return;
  }
  for (int64_t j = 0; j < J; ++j) {
    T top = logits[j];
    for (int64_t i = 1; i < I; ++i) top = std::max(top, logits[i * J + j]);
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < I; ++i) {
      c[i * J + j] = exp_vectorizable(logits[i * J + j] - top);
      sum += c[i * J + j];
    }
    const T inv = 1 / sum;
    for (int64_t i = 0; i < I; ++i) c[i * J + j] *= inv;
  }
}

// v = |s|^2 / (1 + |s|^2) * s / sqrt(|s|^2 + eps), Eq. 1.
template <typename T>
CAPSNET_INLINE void squash(int64_t M, double eps, const T* s, T* v) {
  T q = 0;
  for (int64_t m = 0; m < M; ++m) q += s[m] * s[m];
  const T scale = q / ((1 + q) * std::sqrt(q + static_cast<T>(eps)));
  for (int64_t m = 0; m < M; ++m) v[m] = scale * s[m];
}

// v = g(q) s with q = |s|^2, so ds = g dv + 2 g'(q) (s . dv) s, and
// g'(q) = h (1 - q / (1 + q) - q / (2 (q + eps))) with h = 1 / ((1 + q) sqrt(q + eps)),
// a form that stays finite at q = 0.
template <typename T>
CAPSNET_INLINE void squash_backward(int64_t M, double eps, const T* s, const T* grad_v, T* grad_s) {
  T q = 0, s_dot_g = 0;
  for (int64_t m = 0; m < M; ++m) {
    q += s[m] * s[m];
    s_dot_g += s[m] * grad_v[m];
  }
  const T qe = q + static_cast<T>(eps);
  const T h = 1 / ((1 + q) * std::sqrt(qe));
  const T g = q * h;
  const T dg = h * (1 - q / (1 + q) - q / (2 * qe));
  for (int64_t m = 0; m < M; ++m) grad_s[m] = g * grad_v[m] + 2 * dg * s_dot_g * s[m];
}

// kM: D_out when known at compile time (16 in the paper), 0 when not. With it
// the loops over m have a fixed trip count, so the compiler keeps s_j in
// registers and sums the agreements' products with vector shuffles.
template <typename T, int64_t kM>
CAPSNET_INLINE void forward_fixed(const RoutingShape& sh, const T* u_hat, int64_t row_stride,
                                 const T* bias, T* logits, T* coupling, T* s, T* v) {
  const int64_t I = sh.n_in, J = sh.n_out, M = kM ? kM : sh.d_out;
  std::fill(logits, logits + I * J, T(0));
  for (int64_t t = 0; t < sh.iterations; ++t) {
    T* c = coupling + t * I * J;
    T* st = s + t * J * M;
    T* vt = v + t * J * M;
    softmax(sh, logits, c);
    // s_j = sum_i c_ij u_hat_j|i (+ bias)
    if constexpr (kM > 0) {
      for (int64_t j = 0; j < J; ++j) { // s_j in registers over all i
        T acc[kM];
        for (int64_t m = 0; m < kM; ++m) acc[m] = bias ? bias[j * kM + m] : T(0);
        for (int64_t i = 0; i < I; ++i) {
          const T cij = c[i * J + j];
          const T* uh = u_hat + i * row_stride + j * kM;
#pragma omp simd
          for (int64_t m = 0; m < kM; ++m) acc[m] += cij * uh[m];
        }
        std::copy(acc, acc + kM, st + j * kM);
      }
    } else {
      for (int64_t k = 0; k < J * M; ++k) st[k] = bias ? bias[k] : T(0);
      for (int64_t i = 0; i < I; ++i) {
        for (int64_t j = 0; j < J; ++j) {
          const T cij = c[i * J + j];
          const T* uh = u_hat + i * row_stride + j * M;
          T* sj = st + j * M;
#pragma omp simd
          for (int64_t m = 0; m < M; ++m) sj[m] += cij * uh[m];
        }
      }
    }
    for (int64_t j = 0; j < J; ++j) squash(M, sh.eps, st + j * M, vt + j * M);
    if (t + 1 == sh.iterations) break; // the last agreement would not be used
    for (int64_t i = 0; i < I; ++i) {
      for (int64_t j = 0; j < J; ++j) {
        const T* uh = u_hat + i * row_stride + j * M;
        const T* vj = vt + j * M;
        T agreement = 0;
#pragma omp simd reduction(+ : agreement)
        for (int64_t m = 0; m < M; ++m) agreement += uh[m] * vj[m];
        logits[i * J + j] += agreement;
      }
    }
  }
}

template <typename T, int64_t kM>
CAPSNET_INLINE void backward_fixed(const RoutingShape& sh, const T* u_hat, int64_t row_stride,
                                  const T* coupling, const T* s, const T* v, const T* grad_v,
                                  T* grad_u_hat, T* grad_bias, T* grad_logits, T* grad_coupling,
                                  T* grad_v_t, T* grad_s) {
  const int64_t I = sh.n_in, J = sh.n_out, M = kM ? kM : sh.d_out;
  for (int64_t i = 0; i < I; ++i) std::fill(grad_u_hat + i * row_stride, grad_u_hat + i * row_stride + J * M, T(0));
  std::fill(grad_logits, grad_logits + I * J, T(0)); // dL/db^{t+1}; b^r does not exist
  for (int64_t t = sh.iterations - 1; t >= 0; --t) {
    const T* c = coupling + t * I * J;
    if (t + 1 == sh.iterations) {
      std::copy(grad_v, grad_v + J * M, grad_v_t);
    } else {
      // b^{t+1}_ij = b^t_ij + u_hat_ij . v^t_j
      const T* vt = v + t * J * M;
      if constexpr (kM > 0) {
        for (int64_t j = 0; j < J; ++j) { // dL/dv_j in registers over all i
          T gv[kM] = {};
          const T* vj = vt + j * kM;
          for (int64_t i = 0; i < I; ++i) {
            const T gb = grad_logits[i * J + j];
            const T* uh = u_hat + i * row_stride + j * kM;
            T* guh = grad_u_hat + i * row_stride + j * kM;
#pragma omp simd
            for (int64_t m = 0; m < kM; ++m) {
              gv[m] += gb * uh[m];
              guh[m] += gb * vj[m];
            }
          }
          std::copy(gv, gv + kM, grad_v_t + j * kM);
        }
      } else {
        std::fill(grad_v_t, grad_v_t + J * M, T(0));
        for (int64_t i = 0; i < I; ++i) {
          for (int64_t j = 0; j < J; ++j) {
            const T gb = grad_logits[i * J + j];
            const T* uh = u_hat + i * row_stride + j * M;
            T* guh = grad_u_hat + i * row_stride + j * M;
            T* gv = grad_v_t + j * M;
            const T* vj = vt + j * M;
#pragma omp simd
            for (int64_t m = 0; m < M; ++m) {
              gv[m] += gb * uh[m];
              guh[m] += gb * vj[m];
            }
          }
        }
      }
    }
    for (int64_t j = 0; j < J; ++j) {
      squash_backward(M, sh.eps, s + t * J * M + j * M, grad_v_t + j * M, grad_s + j * M);
    }
    if (grad_bias) {
      for (int64_t k = 0; k < J * M; ++k) grad_bias[k] += grad_s[k];
    }
    // s^t_j = sum_i c_ij u_hat_ij
    for (int64_t i = 0; i < I; ++i) {
      for (int64_t j = 0; j < J; ++j) {
        const T* uh = u_hat + i * row_stride + j * M;
        T* guh = grad_u_hat + i * row_stride + j * M;
        const T* gs = grad_s + j * M;
        const T cij = c[i * J + j];
        T gc = 0;
#pragma omp simd reduction(+ : gc)
        for (int64_t m = 0; m < M; ++m) {
          gc += gs[m] * uh[m];
          guh[m] += cij * gs[m];
        }
        grad_coupling[i * J + j] = gc;
      }
    }
    // c^t = softmax(b^t); b^{t+1} = b^t + ..., so dL/db^t = dL/db^{t+1} + softmax'.
    if (sh.softmax_over_parents) {
      for (int64_t i = 0; i < I; ++i) {
        T dot = 0;
        for (int64_t j = 0; j < J; ++j) dot += c[i * J + j] * grad_coupling[i * J + j];
        for (int64_t j = 0; j < J; ++j) {
          grad_logits[i * J + j] += c[i * J + j] * (grad_coupling[i * J + j] - dot);
        }
      }
    } else {
      for (int64_t j = 0; j < J; ++j) {
        T dot = 0;
        for (int64_t i = 0; i < I; ++i) dot += c[i * J + j] * grad_coupling[i * J + j];
        for (int64_t i = 0; i < I; ++i) {
          grad_logits[i * J + j] += c[i * J + j] * (grad_coupling[i * J + j] - dot);
        }
      }
    }
  }
}

template <typename T>
CAPSNET_INLINE void forward_impl(const RoutingShape& sh, const T* u_hat, int64_t row_stride,
                                 const T* bias, T* logits, T* coupling, T* s, T* v) {
  if (sh.d_out == 16) return forward_fixed<T, 16>(sh, u_hat, row_stride, bias, logits, coupling, s, v);
  forward_fixed<T, 0>(sh, u_hat, row_stride, bias, logits, coupling, s, v);
}

template <typename T>
CAPSNET_INLINE void backward_impl(const RoutingShape& sh, const T* u_hat, int64_t row_stride,
                                  const T* coupling, const T* s, const T* v, const T* grad_v,
                                  T* grad_u_hat, T* grad_bias, T* grad_logits, T* grad_coupling,
                                  T* grad_v_t, T* grad_s) {
  if (sh.d_out == 16) {
    return backward_fixed<T, 16>(sh, u_hat, row_stride, coupling, s, v, grad_v, grad_u_hat,
                                 grad_bias, grad_logits, grad_coupling, grad_v_t, grad_s);
  }
  backward_fixed<T, 0>(sh, u_hat, row_stride, coupling, s, v, grad_v, grad_u_hat, grad_bias,
                       grad_logits, grad_coupling, grad_v_t, grad_s);
}

// u_hat[k][i] = u[k][i] W[i] for `images` images; W[i] ([N, J * M] rows, 5 KB
// on the paper's shapes) is read once for all of them.
template <typename T>
CAPSNET_INLINE void predict_impl(const RoutingShape& sh, int64_t images, const T* u,
                                 const T* w_rows, T* u_hat) {
  const int64_t I = sh.n_in, N = sh.d_in, L = sh.n_out * sh.d_out;
  for (int64_t i = 0; i < I; ++i) {
    const T* w = w_rows + i * N * L;
    for (int64_t k = 0; k < images; ++k) {
      const T* uk = u + (k * I + i) * N;
      T* out = u_hat + (k * I + i) * L;
#pragma omp simd
      for (int64_t l = 0; l < L; ++l) out[l] = uk[0] * w[l];
      for (int64_t n = 1; n < N; ++n) {
        const T un = uk[n];
        const T* wn = w + n * L;
#pragma omp simd
        for (int64_t l = 0; l < L; ++l) out[l] += un * wn[l];
      }
    }
  }
}

// grad_u[k][i] = W[i] grad_u_hat[k][i], grad_w_rows[i] += sum_k u[k][i]^T grad_u_hat[k][i]:
// W[i] and its gradient are read and written once for all the images.
template <typename T>
CAPSNET_INLINE void predict_backward_impl(const RoutingShape& sh, int64_t images, const T* u,
                                          const T* w_rows, const T* grad_u_hat, T* grad_u,
                                          T* grad_w_rows) {
  const int64_t I = sh.n_in, N = sh.d_in, L = sh.n_out * sh.d_out;
  for (int64_t i = 0; i < I; ++i) {
    for (int64_t n = 0; n < N; ++n) {
      const T* w = w_rows + (i * N + n) * L;
      T* gw = grad_w_rows + (i * N + n) * L;
      for (int64_t k = 0; k < images; ++k) {
        const T* g = grad_u_hat + (k * I + i) * L;
        const T un = u[(k * I + i) * N + n];
        T dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t l = 0; l < L; ++l) {
          dot += w[l] * g[l];
          gw[l] += un * g[l];
        }
        grad_u[(k * I + i) * N + n] = dot;
      }
    }
  }
}

} // namespace

#define CAPSNET_DEFINE_KERNELS(T)                                                           \
  CAPSNET_DEFINE_DISPATCHED(predict, predict_impl,                                          \
                            (const RoutingShape& shape, int64_t images, const T* u,         \
                             const T* w_rows, T* u_hat),                                    \
                            (shape, images, u, w_rows, u_hat))                              \
  CAPSNET_DEFINE_DISPATCHED(predict_backward, predict_backward_impl,                        \
                            (const RoutingShape& shape, int64_t images, const T* u,         \
                             const T* w_rows, const T* grad_u_hat, T* grad_u,               \
                             T* grad_w_rows),                                               \
                            (shape, images, u, w_rows, grad_u_hat, grad_u, grad_w_rows))    \
  CAPSNET_DEFINE_DISPATCHED(routing_forward, forward_impl,                                  \
                            (const RoutingShape& shape, const T* u_hat, int64_t row_stride, \
                             const T* bias, T* logits, T* coupling, T* s, T* v),            \
                            (shape, u_hat, row_stride, bias, logits, coupling, s, v))       \
  CAPSNET_DEFINE_DISPATCHED(routing_backward, backward_impl,                                \
                            (const RoutingShape& shape, const T* u_hat, int64_t row_stride, \
                             const T* coupling, const T* s, const T* v, const T* grad_v,    \
                             T* grad_u_hat, T* grad_bias, T* grad_logits, T* grad_coupling, \
                             T* grad_v_t, T* grad_s),                                       \
                            (shape, u_hat, row_stride, coupling, s, v, grad_v, grad_u_hat,  \
                             grad_bias, grad_logits, grad_coupling, grad_v_t, grad_s))

CAPSNET_DEFINE_KERNELS(float)
CAPSNET_DEFINE_KERNELS(double)

} // namespace capsnet::cpu
