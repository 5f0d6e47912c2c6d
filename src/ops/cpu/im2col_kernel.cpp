#include "im2col_kernel.h"

#include "isa_dispatch.h"

#include <cstring>

namespace capsnet::cpu {

namespace {

CAPSNET_INLINE uint16_t to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; // NaN
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

CAPSNET_INLINE float from_bf16(uint16_t value) {
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

CAPSNET_INLINE float convert(float value, float*) { return value; }
CAPSNET_INLINE uint16_t convert(float value, uint16_t*) { return to_bf16(value); }
CAPSNET_INLINE float widen(float value) { return value; }
CAPSNET_INLINE float widen(uint16_t value) { return from_bf16(value); }

template <typename T>
CAPSNET_INLINE void im2col_impl(const ConvShape& sh, const float* x, T* col) {
  const int64_t C = sh.channels, H = sh.height, W = sh.width, K = sh.kernel, S = sh.stride;
  const int64_t OH = sh.out_height(), OW = sh.out_width();
  for (int64_t oy = 0; oy < OH; ++oy) {
    for (int64_t ox = 0; ox < OW; ++ox) {
      T* row = col + (oy * OW + ox) * C * K * K;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t ky = 0; ky < K; ++ky) {
          const float* src = x + (c * H + oy * S + ky) * W + ox * S;
          T* dst = row + (c * K + ky) * K;
          for (int64_t kx = 0; kx < K; ++kx) dst[kx] = convert(src[kx], dst);
        }
      }
    }
  }
}

template <typename T>
CAPSNET_INLINE void col2im_impl(const ConvShape& sh, const T* grad_col, int64_t c_begin,
                                int64_t c_end, float* grad_x) {
  const int64_t C = sh.channels, H = sh.height, W = sh.width, K = sh.kernel, S = sh.stride;
  const int64_t OH = sh.out_height(), OW = sh.out_width();
  for (int64_t c = c_begin; c < c_end; ++c) {
    float* out = grad_x + c * H * W;
    for (int64_t i = 0; i < H * W; ++i) out[i] = 0.0f;
    for (int64_t oy = 0; oy < OH; ++oy) {
      for (int64_t ox = 0; ox < OW; ++ox) {
        const T* src = grad_col + (oy * OW + ox) * C * K * K + c * K * K;
        for (int64_t ky = 0; ky < K; ++ky) {
          float* dst = out + (oy * S + ky) * W + ox * S;
          for (int64_t kx = 0; kx < K; ++kx) dst[kx] += widen(src[ky * K + kx]);
        }
      }
    }
  }
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
