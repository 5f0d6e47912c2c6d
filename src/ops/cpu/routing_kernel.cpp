#include "routing_kernel.h"

#include "isa_dispatch.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

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

// c = softmax(logits), [J, I]; scratch [I].
template <typename T>
CAPSNET_INLINE void softmax(const RoutingShape& sh, const T* logits, T* c, T* scratch) {
  const int64_t I = sh.n_in, J = sh.n_out;
  if (sh.softmax_over_parents) { // over j for each i: elementwise across the J rows
    T* top = scratch;
    std::copy(logits, logits + I, top);
    for (int64_t j = 1; j < J; ++j) {
      const T* row = logits + j * I;
#pragma omp simd
      for (int64_t i = 0; i < I; ++i) top[i] = std::max(top[i], row[i]);
    }
    for (int64_t j = 0; j < J; ++j) {
      const T* row = logits + j * I;
      T* out = c + j * I;
#pragma omp simd
      for (int64_t i = 0; i < I; ++i) out[i] = exp_vectorizable(row[i] - top[i]);
    }
    T* inv = scratch; // the maxima are no longer needed
    std::copy(c, c + I, inv);
    for (int64_t j = 1; j < J; ++j) {
      const T* row = c + j * I;
#pragma omp simd
      for (int64_t i = 0; i < I; ++i) inv[i] += row[i];
    }
#pragma omp simd
    for (int64_t i = 0; i < I; ++i) inv[i] = 1 / inv[i];
    for (int64_t j = 0; j < J; ++j) {
      T* out = c + j * I;
#pragma omp simd
      for (int64_t i = 0; i < I; ++i) out[i] *= inv[i];
    }
    return;
  }
  for (int64_t j = 0; j < J; ++j) { // over i for each j: along a row
    const T* row = logits + j * I;
    T* out = c + j * I;
    T top = row[0];
#pragma omp simd reduction(max : top)
    for (int64_t i = 1; i < I; ++i) top = std::max(top, row[i]);
    T sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < I; ++i) {
      out[i] = exp_vectorizable(row[i] - top);
      sum += out[i];
    }
    const T inv = 1 / sum;
#pragma omp simd
    for (int64_t i = 0; i < I; ++i) out[i] *= inv;
  }
}

template <typename T>
CAPSNET_INLINE T dot(int64_t n, const T* a, const T* b) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

template <typename T>
CAPSNET_INLINE void forward_impl(const RoutingShape& sh, const T* u_hat, const T* bias,
                                 T* logits, T* coupling, T* s, T* v) {
  const int64_t I = sh.n_in, J = sh.n_out, M = sh.d_out;
  T* scratch = logits + J * I;
  std::fill(logits, logits + J * I, T(0));
  for (int64_t t = 0; t < sh.iterations; ++t) {
    T* c = coupling + t * J * I;
    T* st = s + t * J * M;
    T* vt = v + t * J * M;
    softmax(sh, logits, c, scratch);
    // s_j = sum_i c_ij u_hat_j|i (+ bias)
    for (int64_t j = 0; j < J; ++j) {
      for (int64_t m = 0; m < M; ++m) {
        st[j * M + m] = (bias ? bias[j * M + m] : T(0)) + dot(I, c + j * I, u_hat + (j * M + m) * I);
      }
    }
    for (int64_t j = 0; j < J; ++j) squash(M, sh.eps, st + j * M, vt + j * M);
    if (t + 1 == sh.iterations) break; // the last agreement would not be used
    // b_ij += u_hat_j|i . v_j
    for (int64_t j = 0; j < J; ++j) {
      T* b = logits + j * I;
      for (int64_t m = 0; m < M; ++m) {
        const T vjm = vt[j * M + m];
        const T* uh = u_hat + (j * M + m) * I;
#pragma omp simd
        for (int64_t i = 0; i < I; ++i) b[i] += vjm * uh[i];
      }
    }
  }
}

template <typename T>
CAPSNET_INLINE void backward_impl(const RoutingShape& sh, const T* u_hat, const T* coupling,
                                  const T* s, const T* v, const T* grad_v, T* grad_u_hat,
                                  T* grad_bias, T* grad_logits, T* grad_coupling, T* grad_v_t,
                                  T* grad_s) {
  const int64_t I = sh.n_in, J = sh.n_out, M = sh.d_out;
  T* scratch = grad_logits + J * I;
  std::fill(grad_logits, grad_logits + J * I, T(0)); // dL/db^{t+1}; b^r does not exist
  for (int64_t t = sh.iterations - 1; t >= 0; --t) {
    const T* c = coupling + t * J * I;
    const T* vt = v + t * J * M;
    const bool last = t + 1 == sh.iterations;
    if (last) {
      std::copy(grad_v, grad_v + J * M, grad_v_t);
    } else { // b^{t+1}_ij = b^t_ij + u_hat_ij . v^t_j
      for (int64_t j = 0; j < J; ++j) {
        for (int64_t m = 0; m < M; ++m) {
          grad_v_t[j * M + m] = dot(I, grad_logits + j * I, u_hat + (j * M + m) * I);
        }
      }
    }
    for (int64_t j = 0; j < J; ++j) {
      squash_backward(M, sh.eps, s + t * J * M + j * M, grad_v_t + j * M, grad_s + j * M);
    }
    if (grad_bias) {
      for (int64_t k = 0; k < J * M; ++k) grad_bias[k] += grad_s[k];
    }
    // s^t_j = sum_i c_ij u_hat_ij, with the agreement's part of dL/du_hat in the same pass.
    for (int64_t j = 0; j < J; ++j) {
      const T* cj = c + j * I;
      const T* gb = grad_logits + j * I;
      T* gc = grad_coupling + j * I;
      for (int64_t m = 0; m < M; ++m) {
        const T* uh = u_hat + (j * M + m) * I;
        T* guh = grad_u_hat + (j * M + m) * I;
        const T gs = grad_s[j * M + m];
        if (m == 0) {
#pragma omp simd
          for (int64_t i = 0; i < I; ++i) gc[i] = gs * uh[i];
        } else {
#pragma omp simd
          for (int64_t i = 0; i < I; ++i) gc[i] += gs * uh[i];
        }
        if (last) {
#pragma omp simd
          for (int64_t i = 0; i < I; ++i) guh[i] = cj[i] * gs;
        } else {
          const T vjm = vt[j * M + m];
#pragma omp simd
          for (int64_t i = 0; i < I; ++i) guh[i] += cj[i] * gs + gb[i] * vjm;
        }
      }
    }
    // c^t = softmax(b^t); b^{t+1} = b^t + ..., so dL/db^t = dL/db^{t+1} + softmax'.
    if (sh.softmax_over_parents) {
      T* dot_c = scratch;
      std::fill(dot_c, dot_c + I, T(0));
      for (int64_t j = 0; j < J; ++j) {
        const T* cj = c + j * I;
        const T* gc = grad_coupling + j * I;
#pragma omp simd
        for (int64_t i = 0; i < I; ++i) dot_c[i] += cj[i] * gc[i];
      }
      for (int64_t j = 0; j < J; ++j) {
        const T* cj = c + j * I;
        const T* gc = grad_coupling + j * I;
        T* gb = grad_logits + j * I;
#pragma omp simd
        for (int64_t i = 0; i < I; ++i) gb[i] += cj[i] * (gc[i] - dot_c[i]);
      }
    } else {
      for (int64_t j = 0; j < J; ++j) {
        const T* cj = c + j * I;
        const T* gc = grad_coupling + j * I;
        T* gb = grad_logits + j * I;
        const T dot_c = dot(I, cj, gc);
#pragma omp simd
        for (int64_t i = 0; i < I; ++i) gb[i] += cj[i] * (gc[i] - dot_c);
      }
    }
  }
}

// 32 bytes of T as one GCC vector (one AVX2 register; half an AVX-512 one):
// the sums below over short loops are kept in arrays of these, which stay in
// registers on every ISA (a plain T[16] accumulator spilled to the stack in
// the AVX2 variant, and a 64-byte vector type is broken up there).
template <typename T>
struct Vec32;
template <>
struct Vec32<float> {
  typedef float type __attribute__((vector_size(32)));
};
template <>
struct Vec32<double> {
  typedef double type __attribute__((vector_size(32)));
};
template <typename T>
using Vec = typename Vec32<T>::type;
template <typename T>
constexpr int64_t kLanes = 32 / sizeof(T);
template <typename T>
CAPSNET_INLINE void load(Vec<T>& v, const T* p) { // (a returned vector would warn -Wpsabi)
  std::memcpy(&v, p, sizeof v);
}
template <typename T>
CAPSNET_INLINE void store(const Vec<T>& v, T* p) {
  std::memcpy(p, &v, sizeof v);
}

// 8 x 8 floats: out rows (out_stride apart) = in columns (in rows in_stride
// apart), by the shuffles of the usual AVX transpose, written with GCC's
// vector extensions so that each ISA's variant gets its own instructions.
typedef float Float8 __attribute__((vector_size(32)));
CAPSNET_INLINE void transpose8x8(const float* in, int64_t in_stride, float* out,
                                 int64_t out_stride) {
  Float8 r[8], t[8], q[8];
  for (int k = 0; k < 8; ++k) std::memcpy(&r[k], in + k * in_stride, sizeof(Float8));
  for (int k = 0; k < 8; k += 2) {
    t[k] = __builtin_shufflevector(r[k], r[k + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[k + 1] = __builtin_shufflevector(r[k], r[k + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int k = 0; k < 8; k += 4) {
    q[k] = __builtin_shufflevector(t[k], t[k + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    q[k + 1] = __builtin_shufflevector(t[k], t[k + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    q[k + 2] = __builtin_shufflevector(t[k + 1], t[k + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    q[k + 3] = __builtin_shufflevector(t[k + 1], t[k + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = __builtin_shufflevector(q[k], q[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
    r[k + 4] = __builtin_shufflevector(q[k], q[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
  }
  for (int k = 0; k < 8; ++k) std::memcpy(out + k * out_stride, &r[k], sizeof(Float8));
}

// out[c * out_stride + r] = in[r * in_stride + c] for r < rows, c < cols:
// floats 8 x 8 by shuffles where both sizes allow, anything else element by
// element.
template <typename T>
CAPSNET_INLINE void transpose_block(int64_t rows, int64_t cols, const T* in, int64_t in_stride,
                                    T* out, int64_t out_stride) {
  if constexpr (std::is_same_v<T, float>) {
    if (rows % 8 == 0 && cols % 8 == 0) {
      for (int64_t r = 0; r < rows; r += 8) {
        for (int64_t c = 0; c < cols; c += 8) {
          transpose8x8(in + r * in_stride + c, in_stride, out + c * out_stride + r, out_stride);
        }
      }
      return;
    }
  }
  for (int64_t c = 0; c < cols; ++c) {
    for (int64_t r = 0; r < rows; ++r) out[c * out_stride + r] = in[r * in_stride + c];
  }
}

// u_hat[k][i] = u[k][i] W[i] for `images` images: W[i] ([J, N, M], 5 KB on
// the paper's shapes) is read once for all of them; a block of rows
// ([images, kPredictRows, L] in `rows`) is then transposed into u_hat [L, I].
// kM: D_out when known at compile time (16 in the paper), 0 when not.
template <typename T, int64_t kM>
CAPSNET_INLINE void predict_fixed(const RoutingShape& sh, int64_t images, const T* u,
                                  const T* weight, T* rows, T* u_hat) {
  const int64_t I = sh.n_in, J = sh.n_out, N = sh.d_in, M = kM ? kM : sh.d_out, L = J * M;
  for (int64_t i0 = 0; i0 < I; i0 += kPredictRows) {
    const int64_t block = std::min(kPredictRows, I - i0);
    for (int64_t i = i0; i < i0 + block; ++i) {
      const T* w = weight + i * J * N * M;
      for (int64_t k = 0; k < images; ++k) {
        const T* uk = u + (k * I + i) * N;
        T* out = rows + (k * kPredictRows + i - i0) * L;
        for (int64_t j = 0; j < J; ++j) {
          const T* wj = w + j * N * M;
          if constexpr (kM > 0) {
            constexpr int64_t kV = kM / kLanes<T>;
            Vec<T> acc[kV];
            Vec<T> x;
            for (int64_t v = 0; v < kV; ++v) {
              load(x, wj + v * kLanes<T>);
              acc[v] = uk[0] * x;
            }
            for (int64_t n = 1; n < N; ++n) {
              for (int64_t v = 0; v < kV; ++v) {
                load(x, wj + n * kM + v * kLanes<T>);
                acc[v] += uk[n] * x;
              }
            }
            for (int64_t v = 0; v < kV; ++v) store(acc[v], out + j * kM + v * kLanes<T>);
          } else {
            for (int64_t m = 0; m < M; ++m) {
              T sum = 0;
              for (int64_t n = 0; n < N; ++n) sum += uk[n] * wj[n * M + m];
              out[j * M + m] = sum;
            }
          }
        }
      }
    }
    for (int64_t k = 0; k < images; ++k) {
      transpose_block(block, L, rows + k * kPredictRows * L, L, u_hat + k * L * I + i0, I);
    }
  }
}

// grad_u[k][i] = W[i] grad_u_hat[k][i], grad_weight[i] += sum_k u[k][i]^T grad_u_hat[k][i]
// (both in W's layout [I, J, N, M]), from grad_u_hat transposed a block of
// kPredictRows rows at a time into rows [images, kPredictRows, L]: W[i] and its gradient
// are read and written once for all the images.
template <typename T, int64_t kM, int64_t kN>
CAPSNET_INLINE void predict_backward_fixed(const RoutingShape& sh, int64_t images, const T* u,
                                           const T* weight, const T* grad_u_hat, T* rows,
                                           T* grad_u, T* grad_weight) {
  const int64_t I = sh.n_in, J = sh.n_out, N = kN ? kN : sh.d_in, M = kM ? kM : sh.d_out,
                L = J * M;
  for (int64_t i = 0; i < I; ++i) {
    if (i % kPredictRows == 0) { // the next block of grad_u_hat's columns as rows
      for (int64_t k = 0; k < images; ++k) {
        transpose_block(L, std::min(kPredictRows, I - i), grad_u_hat + k * L * I + i, I,
                        rows + k * kPredictRows * L, L);
      }
    }
    const T* w = weight + i * J * N * M; // W[i][j][n] is w + (j * N + n) * M
    T* gw = grad_weight + i * J * N * M;
    // dW[i][j][n] += sum_k u[k][i][n] dL/du_hat[k][i][j]
    for (int64_t j = 0; j < J; ++j) {
      for (int64_t n = 0; n < N; ++n) {
        T* out = gw + (j * N + n) * M;
        if constexpr (kM > 0) { // the sum in registers over the images
          constexpr int64_t kV = kM / kLanes<T>;
          Vec<T> acc[kV];
          for (int64_t v = 0; v < kV; ++v) load(acc[v], out + v * kLanes<T>);
          for (int64_t k = 0; k < images; ++k) {
            const T un = u[(k * I + i) * N + n];
            const T* g = rows + (k * kPredictRows + i % kPredictRows) * L + j * kM;
            Vec<T> x;
            for (int64_t v = 0; v < kV; ++v) {
              load(x, g + v * kLanes<T>);
              acc[v] += un * x;
            }
          }
          for (int64_t v = 0; v < kV; ++v) store(acc[v], out + v * kLanes<T>);
        } else {
          for (int64_t k = 0; k < images; ++k) {
            const T un = u[(k * I + i) * N + n];
            const T* g = rows + (k * kPredictRows + i % kPredictRows) * L + j * M;
            for (int64_t m = 0; m < M; ++m) out[m] += un * g[m];
          }
        }
      }
    }
    // du[k][i][n] = sum_j W[i][j][n] . dL/du_hat[k][i][j]: with the paper's
    // D_in and D_out known, the N sums run side by side in registers (one
    // after the other they would wait on each other's latency).
    for (int64_t k = 0; k < images; ++k) {
      const T* g = rows + (k * kPredictRows + i % kPredictRows) * L;
      T* du = grad_u + (k * I + i) * N;
      if constexpr (kM > 0 && kN > 0) {
        constexpr int64_t kSide = 4; // 4 x 16 sums: 8 of the 16 AVX2 registers
        for (int64_t n0 = 0; n0 < kN; n0 += kSide) {
          constexpr int64_t kV = kM / kLanes<T>;
          Vec<T> acc[kSide][kV] = {};
          for (int64_t j = 0; j < J; ++j) {
            for (int64_t v = 0; v < kV; ++v) {
              Vec<T> gj, x;
              load(gj, g + j * kM + v * kLanes<T>);
              for (int64_t n = 0; n < kSide; ++n) {
                load(x, w + (j * kN + n0 + n) * kM + v * kLanes<T>);
                acc[n][v] += x * gj;
              }
            }
          }
          for (int64_t n = 0; n < kSide; ++n) {
            Vec<T> total = acc[n][0];
            for (int64_t v = 1; v < kV; ++v) total += acc[n][v];
            T dot = 0;
            for (int64_t l = 0; l < kLanes<T>; ++l) dot += total[l];
            du[n0 + n] = dot;
          }
        }
      } else {
        for (int64_t n = 0; n < N; ++n) {
          T dot = 0;
          for (int64_t j = 0; j < J; ++j) {
            for (int64_t m = 0; m < M; ++m) dot += w[(j * N + n) * M + m] * g[j * M + m];
          }
          du[n] = dot;
        }
      }
    }
  }
}

template <typename T>
CAPSNET_INLINE void predict_impl(const RoutingShape& sh, int64_t images, const T* u,
                                 const T* weight, T* rows, T* u_hat) {
  if (sh.d_out == 16) return predict_fixed<T, 16>(sh, images, u, weight, rows, u_hat);
  predict_fixed<T, 0>(sh, images, u, weight, rows, u_hat);
}

template <typename T>
CAPSNET_INLINE void predict_backward_impl(const RoutingShape& sh, int64_t images, const T* u,
                                          const T* weight, const T* grad_u_hat, T* rows,
                                          T* grad_u, T* grad_weight) {
  if (sh.d_out == 16 && sh.d_in == 8) {
    return predict_backward_fixed<T, 16, 8>(sh, images, u, weight, grad_u_hat, rows, grad_u,
                                            grad_weight);
  }
  predict_backward_fixed<T, 0, 0>(sh, images, u, weight, grad_u_hat, rows, grad_u,
                                  grad_weight);
}

} // namespace

#define CAPSNET_DEFINE_KERNELS(T)                                                           \
  CAPSNET_DEFINE_DISPATCHED(predict, predict_impl,                                          \
                            (const RoutingShape& shape, int64_t images, const T* u,         \
                             const T* weight, T* rows, T* u_hat),                           \
                            (shape, images, u, weight, rows, u_hat))                        \
  CAPSNET_DEFINE_DISPATCHED(predict_backward, predict_backward_impl,                        \
                            (const RoutingShape& shape, int64_t images, const T* u,         \
                             const T* weight, const T* grad_u_hat, T* rows, T* grad_u,      \
                             T* grad_weight),                                               \
                            (shape, images, u, weight, grad_u_hat, rows, grad_u,            \
                             grad_weight))                                                  \
  CAPSNET_DEFINE_DISPATCHED(routing_forward, forward_impl,                                  \
                            (const RoutingShape& shape, const T* u_hat, const T* bias,      \
                             T* logits, T* coupling, T* s, T* v),                           \
                            (shape, u_hat, bias, logits, coupling, s, v))                   \
  CAPSNET_DEFINE_DISPATCHED(routing_backward, backward_impl,                                \
                            (const RoutingShape& shape, const T* u_hat, const T* coupling,  \
                             const T* s, const T* v, const T* grad_v, T* grad_u_hat,        \
                             T* grad_bias, T* grad_logits, T* grad_coupling, T* grad_v_t,   \
                             T* grad_s),                                                    \
                            (shape, u_hat, coupling, s, v, grad_v, grad_u_hat, grad_bias,   \
                             grad_logits, grad_coupling, grad_v_t, grad_s))

CAPSNET_DEFINE_KERNELS(float)
CAPSNET_DEFINE_KERNELS(double)

} // namespace capsnet::cpu
