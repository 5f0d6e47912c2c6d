#include "im2col_kernel.h"

#include <cstring>

namespace capsnet::cpu {

namespace {

inline uint16_t to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; // NaN
  return static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

inline float from_bf16(uint16_t value) {
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof out);
  return out;
}

} // namespace

#define CAPSNET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

CAPSNET_CLONES void im2col_bf16(const ConvShape& sh, const float* x, uint16_t* col) {
  const int64_t C = sh.channels, H = sh.height, W = sh.width, K = sh.kernel, S = sh.stride;
  const int64_t OH = sh.out_height(), OW = sh.out_width();
  for (int64_t oy = 0; oy < OH; ++oy) {
    for (int64_t ox = 0; ox < OW; ++ox) {
      uint16_t* row = col + (oy * OW + ox) * C * K * K;
      for (int64_t c = 0; c < C; ++c) {
        for (int64_t ky = 0; ky < K; ++ky) {
          const float* src = x + (c * H + oy * S + ky) * W + ox * S;
          uint16_t* dst = row + (c * K + ky) * K;
          for (int64_t kx = 0; kx < K; ++kx) dst[kx] = to_bf16(src[kx]);
        }
      }
    }
  }
}

CAPSNET_CLONES void col2im_bf16(const ConvShape& sh, const uint16_t* grad_col, int64_t c_begin,
                                int64_t c_end, float* grad_x) {
  const int64_t C = sh.channels, H = sh.height, W = sh.width, K = sh.kernel, S = sh.stride;
  const int64_t OH = sh.out_height(), OW = sh.out_width();
  for (int64_t c = c_begin; c < c_end; ++c) {
    float* out = grad_x + c * H * W;
    for (int64_t i = 0; i < H * W; ++i) out[i] = 0.0f;
    for (int64_t oy = 0; oy < OH; ++oy) {
      for (int64_t ox = 0; ox < OW; ++ox) {
        const uint16_t* src = grad_col + (oy * OW + ox) * C * K * K + c * K * K;
        for (int64_t ky = 0; ky < K; ++ky) {
          float* dst = out + (oy * S + ky) * W + ox * S;
          for (int64_t kx = 0; kx < K; ++kx) dst[kx] += from_bf16(src[ky * K + kx]);
        }
      }
    }
  }
}

CAPSNET_CLONES void float_to_bf16(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = to_bf16(in[i]);
}

} // namespace capsnet::cpu
