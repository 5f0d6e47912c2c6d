#include "im2col_kernel.h"

#include "bf16_bits.h"
#include "isa_dispatch.h"

#include <cstring>
#include <type_traits>
#include <vector>

namespace capsnet::cpu {

namespace {

// dst[0, n) = src[0, n) in 16-byte moves, the last one overlapping the one
// before it, for the short runs of a patch row (K elements: 9 in the paper).
template <typename T>
CAPSNET_INLINE void copy_run(T* dst, const T* src, int64_t n) {
  constexpr int64_t kLane = 16 / sizeof(T);
  if (n < kLane) {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
    return;
  }
  int64_t i = 0;
  for (; i + kLane <= n; i += kLane) std::memcpy(dst + i, src + i, 16);
  if (i < n) std::memcpy(dst + n - kLane, src + n - kLane, 16);
}

// dst[0, n) += widen(src[0, n)), eight lanes at a time.
template <typename T>
CAPSNET_INLINE void add_run(float* dst, const T* src, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int64_t j = 0; j < 8; ++j) dst[i + j] += widen(src[i + j]);
  }
  for (; i < n; ++i) dst[i] += widen(src[i]);
}

// col2im takes the kernel's size as a template argument kFixedK: 9 for the
// paper's bf16 convolutions, 0 for any other (read from the shape). With runs
// of a known length GCC drops its run-time checks and tail loops: bf16 col2im
// of 64 images on the paper's shape took 17-20 ms on one Zen 5 core against
// 35-44 ms natively, 18 against 20 ms as AVX2. The fp32 col2im did not gain
// (10-11 against 7.7 ms for 16 images) and im2col neither, so they keep the
// general loop.
template <int64_t kFixedK>
CAPSNET_INLINE int64_t kernel_of(const ConvShape& sh) {
  return kFixedK > 0 ? kFixedK : sh.kernel;
}

// Patches from an image of T (float, or bf16 already rounded).
template <typename T>
CAPSNET_INLINE void im2col_runs(const ConvShape& sh, const T* x, T* col) {
  const int64_t C = sh.channels, H = sh.height, W = sh.width, K = sh.kernel, S = sh.stride;
  const int64_t OH = sh.out_height(), OW = sh.out_width();
  for (int64_t oy = 0; oy < OH; ++oy) {
    for (int64_t ox = 0; ox < OW; ++ox) {
      T* row = col + (oy * OW + ox) * C * K * K;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t ky = 0; ky < K; ++ky) {
          copy_run(row + (c * K + ky) * K, x + (c * H + oy * S + ky) * W + ox * S, K);
        }
      }
    }
  }
}

CAPSNET_INLINE void im2col_impl(const ConvShape& sh, const float* x, float* col) {
  im2col_runs(sh, x, col);
}

// bf16 patches: the image is rounded once (each pixel appears in up to
// (K / S)^2 patches), then copied as 16-bit runs; the same values as
// rounding every patch element.
CAPSNET_INLINE void im2col_impl(const ConvShape& sh, const float* x, uint16_t* col) {
  const int64_t n = sh.channels * sh.height * sh.width;
  thread_local std::vector<uint16_t> image;
  if (static_cast<int64_t>(image.size()) < n) image.resize(n);
  for (int64_t i = 0; i < n; ++i) image[i] = to_bf16(x[i]);
  im2col_runs(sh, image.data(), col);
}

// Patch by patch, so that grad_col is read in order (its rows are 41 KB
// apart for one channel; reading them channel by channel left the loads
// waiting on memory), into grad_x's channels, which stay in cache.
template <int64_t kFixedK, typename T>
CAPSNET_INLINE void col2im_k(const ConvShape& sh, const T* grad_col, int64_t c_begin,
                             int64_t c_end, float* grad_x) {
  const int64_t C = sh.channels, H = sh.height, W = sh.width, K = kernel_of<kFixedK>(sh),
                S = sh.stride;
  const int64_t OH = sh.out_height(), OW = sh.out_width();
  for (int64_t i = c_begin * H * W; i < c_end * H * W; ++i) grad_x[i] = 0.0f;
  for (int64_t oy = 0; oy < OH; ++oy) {
    for (int64_t ox = 0; ox < OW; ++ox) {
      const T* row = grad_col + (oy * OW + ox) * C * K * K;
      for (int64_t c = c_begin; c < c_end; ++c) {
        float* out = grad_x + (c * H + oy * S) * W + ox * S;
        const T* src = row + c * K * K;
        for (int64_t ky = 0; ky < K; ++ky) add_run(out + ky * W, src + ky * K, K);
      }
    }
  }
}

template <typename T>
CAPSNET_INLINE void col2im_impl(const ConvShape& sh, const T* grad_col, int64_t c_begin,
                                int64_t c_end, float* grad_x) {
  if (std::is_same_v<T, uint16_t> && sh.kernel == 9) {
    return col2im_k<9>(sh, grad_col, c_begin, c_end, grad_x);
  }
  col2im_k<0>(sh, grad_col, c_begin, c_end, grad_x);
}

} // namespace

CAPSNET_INLINE void float_to_bf16_impl(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = to_bf16(in[i]);
}

CAPSNET_DEFINE_DISPATCHED(im2col, im2col_impl, (const ConvShape& sh, const float* x, float* col),
                          (sh, x, col))
CAPSNET_DEFINE_DISPATCHED(im2col_bf16, im2col_impl,
                          (const ConvShape& sh, const float* x, uint16_t* col), (sh, x, col))
CAPSNET_DEFINE_DISPATCHED(col2im, col2im_impl,
                          (const ConvShape& sh, const float* grad_col, int64_t c_begin,
                           int64_t c_end, float* grad_x),
                          (sh, grad_col, c_begin, c_end, grad_x))
CAPSNET_DEFINE_DISPATCHED(col2im_bf16, col2im_impl,
                          (const ConvShape& sh, const uint16_t* grad_col, int64_t c_begin,
                           int64_t c_end, float* grad_x),
                          (sh, grad_col, c_begin, c_end, grad_x))
CAPSNET_DEFINE_DISPATCHED(float_to_bf16, float_to_bf16_impl,
                          (const float* in, int64_t n, uint16_t* out), (in, n, out))

} // namespace capsnet::cpu
