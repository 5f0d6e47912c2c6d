#include "batch_norm_kernel.h"

#include "bf16_bits.h"
#include "isa_dispatch.h"

#include <algorithm>
#include <cmath>

namespace capsnet::cpu {

namespace {

// Everything below is inlined into the exported functions, compiled for
// AVX-512, AVX2 and the baseline ISA (isa_dispatch.h). A row (one image's
// plane of one channel, a few hundred values) is summed in T, lane by lane;
// rows add up in double, so a channel's statistics do not drift with the batch.
template <typename X>
CAPSNET_INLINE auto relu(X stored) {
  const auto value = widen(stored);
  return value > 0 ? value : decltype(value)(0);
}

template <typename T, typename X>
CAPSNET_INLINE double sum_relu(int64_t n, const X* x) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += relu(x[i]);
  return sum;
}

template <typename T, typename X>
CAPSNET_INLINE double sum_squared_deviation(int64_t n, const X* x, T mean) {
  T sum = 0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < n; ++i) sum += (relu(x[i]) - mean) * (relu(x[i]) - mean);
  return sum;
}

// Adds sum g and sum g (relu(x) - mean) over a row of n.
template <typename T, typename X, typename Y>
CAPSNET_INLINE void sum_gradient(int64_t n, const X* x, const Y* g, T mean, double& sum_g,
                                 double& sum_gd) {
  T a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
  for (int64_t i = 0; i < n; ++i) {
    const T gi = widen(g[i]);
    a += gi;
    b += gi * (relu(x[i]) - mean);
  }
  sum_g += a;
  sum_gd += b;
}

template <typename X, typename Y, typename T>
CAPSNET_INLINE void forward_impl(const ChannelShape& sh, int64_t c_begin, int64_t c_end, const X* x,
                                 const T* weight, const T* bias, double eps, T* mean, T* var,
                                 T* invstd, Y* y) {
  const int64_t B = sh.images, C = sh.channels, P = sh.plane;
  const double n = static_cast<double>(B * P);
  for (int64_t c = c_begin; c < c_end; ++c) {
    double sum = 0;
    for (int64_t b = 0; b < B; ++b) sum += sum_relu<T>(P, x + (b * C + c) * P);
    const double m = sum / n;
    double squares = 0;
    for (int64_t b = 0; b < B; ++b) {
      squares += sum_squared_deviation(P, x + (b * C + c) * P, static_cast<T>(m));
    }
    const double v = squares / n;
    const auto k = norm_coefficients(m, v, eps, weight[c], bias[c]);
    mean[c] = static_cast<T>(m);
    var[c] = static_cast<T>(v);
    invstd[c] = static_cast<T>(k.invstd);
    const T scale = static_cast<T>(k.scale), shift = static_cast<T>(k.shift);
    for (int64_t b = 0; b < B; ++b) {
      const X* in = x + (b * C + c) * P;
      Y* out = y + (b * C + c) * P;
#pragma omp simd
      for (int64_t i = 0; i < P; ++i) store(out + i, relu(in[i]) * scale + shift);
    }
  }
}

template <typename X, typename Y, typename T>
CAPSNET_INLINE void backward_impl(const ChannelShape& sh, int64_t c_begin, int64_t c_end,
                                  const X* x, const T* weight, const T* mean, const T* invstd,
                                  const Y* grad_y, X* grad_x, T* grad_weight, T* grad_bias) {
  const int64_t B = sh.images, C = sh.channels, P = sh.plane;
  const double n = static_cast<double>(B * P);
  for (int64_t c = c_begin; c < c_end; ++c) {
    const double m = mean[c];
    double sum_g = 0, sum_gd = 0; // sum grad_y, sum grad_y * (r - mean)
    for (int64_t b = 0; b < B; ++b) {
      sum_gradient(P, x + (b * C + c) * P, grad_y + (b * C + c) * P, static_cast<T>(m), sum_g,
                   sum_gd);
    }
    grad_bias[c] = static_cast<T>(sum_g);
    grad_weight[c] = static_cast<T>(sum_gd * invstd[c]);
    const auto k = grad_coefficients(weight[c], m, invstd[c], sum_g, sum_gd, n);
    const T ka = static_cast<T>(k.a), kd = static_cast<T>(k.d), ke = static_cast<T>(k.e);
    for (int64_t b = 0; b < B; ++b) {
      const X* in = x + (b * C + c) * P;
      const Y* g = grad_y + (b * C + c) * P;
      X* out = grad_x + (b * C + c) * P;
#pragma omp simd
      for (int64_t i = 0; i < P; ++i) {
        const T xi = widen(in[i]);
        store(out + i, xi > 0 ? ka * widen(g[i]) + kd * xi + ke : T(0));
      }
    }
  }
}

// Channels-last: a block's rows run over the channels, so the per-channel
// sums are elementwise additions of rows into part.
template <typename X>
CAPSNET_INLINE void nhwc_sums_impl(const RowsShape& sh, int64_t b_begin, int64_t b_end, const X* x,
                                   const float* mean, float* part) {
  const int64_t C = sh.channels;
  for (int64_t blk = b_begin; blk < b_end; ++blk) {
    float* acc = part + blk * C;
    std::fill(acc, acc + C, 0.0f);
    const int64_t r_end = std::min(sh.rows, (blk + 1) * kBlockRows);
    for (int64_t r = blk * kBlockRows; r < r_end; ++r) {
      const X* row = x + r * C;
      if (mean) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c)
          acc[c] += (relu(row[c]) - mean[c]) * (relu(row[c]) - mean[c]);
      } else {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) acc[c] += relu(row[c]);
      }
    }
  }
}

template <typename X, typename Y>
CAPSNET_INLINE void nhwc_normalize_impl(const RowsShape& sh, int64_t b_begin, int64_t b_end,
                                        const X* x, const float* scale, const float* shift, Y* y) {
  const int64_t C = sh.channels;
  const int64_t r_end = std::min(sh.rows, b_end * kBlockRows);
  for (int64_t r = b_begin * kBlockRows; r < r_end; ++r) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) store(y + r * C + c, relu(x[r * C + c]) * scale[c] + shift[c]);
  }
}

template <typename X, typename Y>
CAPSNET_INLINE void nhwc_gradient_sums_impl(const RowsShape& sh, int64_t b_begin, int64_t b_end,
                                            const X* x, const Y* g, const float* mean,
                                            float* part_g, float* part_gd) {
  const int64_t C = sh.channels;
  for (int64_t blk = b_begin; blk < b_end; ++blk) {
    float* acc_g = part_g + blk * C;
    float* acc_gd = part_gd + blk * C;
    std::fill(acc_g, acc_g + C, 0.0f);
    std::fill(acc_gd, acc_gd + C, 0.0f);
    const int64_t r_end = std::min(sh.rows, (blk + 1) * kBlockRows);
    for (int64_t r = blk * kBlockRows; r < r_end; ++r) {
#pragma omp simd
      for (int64_t c = 0; c < C; ++c) {
        const float gi = widen(g[r * C + c]);
        acc_g[c] += gi;
        acc_gd[c] += gi * (relu(x[r * C + c]) - mean[c]);
      }
    }
  }
}

template <typename X, typename Y>
CAPSNET_INLINE void nhwc_grad_input_impl(const RowsShape& sh, int64_t b_begin, int64_t b_end,
                                         const X* x, const Y* g, const float* a, const float* d,
                                         const float* e, X* grad_x) {
  const int64_t C = sh.channels;
  const int64_t r_end = std::min(sh.rows, b_end * kBlockRows);
  for (int64_t r = b_begin * kBlockRows; r < r_end; ++r) {
#pragma omp simd
    for (int64_t c = 0; c < C; ++c) {
      const float xi = widen(x[r * C + c]);
      store(grad_x + r * C + c, xi > 0 ? a[c] * widen(g[r * C + c]) + d[c] * xi + e[c] : 0.0f);
    }
  }
}

} // namespace

#define CAPSNET_FORWARD_ARGS (sh, c_begin, c_end, x, weight, bias, eps, mean, var, invstd, y)
#define CAPSNET_BACKWARD_ARGS \
  (sh, c_begin, c_end, x, weight, mean, invstd, grad_y, grad_x, grad_weight, grad_bias)
#define CAPSNET_DEFINE_RELU_BN(X, Y, T)                                                           \
  CAPSNET_DEFINE_DISPATCHED(                                                                      \
      relu_batch_norm_forward, forward_impl,                                                      \
      (const ChannelShape& sh, int64_t c_begin, int64_t c_end, const X* x, const T* weight,       \
       const T* bias, double eps, T* mean, T* var, T* invstd, Y* y),                              \
      CAPSNET_FORWARD_ARGS)                                                                       \
  CAPSNET_DEFINE_DISPATCHED(                                                                      \
      relu_batch_norm_backward, backward_impl,                                                    \
      (const ChannelShape& sh, int64_t c_begin, int64_t c_end, const X* x, const T* weight,       \
       const T* mean, const T* invstd, const Y* grad_y, X* grad_x, T* grad_weight, T* grad_bias), \
      CAPSNET_BACKWARD_ARGS)

CAPSNET_DEFINE_RELU_BN(float, float, float)
CAPSNET_DEFINE_RELU_BN(double, double, double)
CAPSNET_DEFINE_RELU_BN(uint16_t, uint16_t, float)
CAPSNET_DEFINE_RELU_BN(uint16_t, float, float)

#define CAPSNET_DEFINE_NHWC_SUMS(X)                                                           \
  CAPSNET_DEFINE_DISPATCHED(nhwc_block_sums, nhwc_sums_impl,                                  \
                            (const RowsShape& sh, int64_t b_begin, int64_t b_end, const X* x, \
                             const float* mean, float* part),                                 \
                            (sh, b_begin, b_end, x, mean, part))
#define CAPSNET_DEFINE_NHWC(X, Y)                                                                \
  CAPSNET_DEFINE_DISPATCHED(nhwc_normalize, nhwc_normalize_impl,                                 \
                            (const RowsShape& sh, int64_t b_begin, int64_t b_end, const X* x,    \
                             const float* scale, const float* shift, Y* y),                      \
                            (sh, b_begin, b_end, x, scale, shift, y))                            \
  CAPSNET_DEFINE_DISPATCHED(nhwc_block_gradient_sums, nhwc_gradient_sums_impl,                   \
                            (const RowsShape& sh, int64_t b_begin, int64_t b_end, const X* x,    \
                             const Y* grad_y, const float* mean, float* part_g, float* part_gd), \
                            (sh, b_begin, b_end, x, grad_y, mean, part_g, part_gd))              \
  CAPSNET_DEFINE_DISPATCHED(                                                                     \
      nhwc_grad_input, nhwc_grad_input_impl,                                                     \
      (const RowsShape& sh, int64_t b_begin, int64_t b_end, const X* x, const Y* grad_y,         \
       const float* a, const float* d, const float* e, X* grad_x),                               \
      (sh, b_begin, b_end, x, grad_y, a, d, e, grad_x))

CAPSNET_DEFINE_NHWC_SUMS(float)
CAPSNET_DEFINE_NHWC_SUMS(uint16_t)
CAPSNET_DEFINE_NHWC(float, float)
CAPSNET_DEFINE_NHWC(uint16_t, uint16_t)
CAPSNET_DEFINE_NHWC(uint16_t, float)

} // namespace capsnet::cpu
