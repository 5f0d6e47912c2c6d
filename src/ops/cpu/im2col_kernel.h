#pragma once

// Plain C++ kernels of the im2col convolutions (fp32 and bf16 GEMMs): no
// LibTorch here. bf16 values are raw uint16_t bit patterns (the upper half of
// an IEEE float), rounded to nearest even.
//
// Layouts (row-major, contiguous):
//   x   [C, H, W]                 one image, float
//   col [OH * OW, C * K * K]      one image's patches, float or bf16; column
//                                 (c, ky, kx) matches weight.view({O, C * K * K})

#include <cstdint>

namespace capsnet::cpu {

struct ConvShape {
  int64_t channels, height, width, kernel, stride;
  int64_t out_height() const { return (height - kernel) / stride + 1; }
  int64_t out_width() const { return (width - kernel) / stride + 1; }
  int64_t patches() const { return out_height() * out_width(); }
  int64_t patch_size() const { return channels * kernel * kernel; }
};

/// Patches of one image: col[p][(c * K + ky) * K + kx] = x[c][oy * S + ky][ox * S + kx]
/// for p = oy * OW + ox.
void im2col(const ConvShape& shape, const float* x, float* col);
void im2col_bf16(const ConvShape& shape, const float* x, uint16_t* col);

/// The adjoint of im2col for channels [c_begin, c_end) of one image:
/// grad_x[c] = sum over patches of grad_col scattered back, in float.
void col2im(const ConvShape& shape, const float* grad_col, int64_t c_begin, int64_t c_end,
            float* grad_x);
void col2im_bf16(const ConvShape& shape, const uint16_t* grad_col, int64_t c_begin,
                 int64_t c_end, float* grad_x);

/// Round to nearest even, as at::BFloat16 does (NaN stays NaN).
void float_to_bf16(const float* in, int64_t n, uint16_t* out);

} // namespace capsnet::cpu
