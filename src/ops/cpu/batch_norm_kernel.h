#pragma once

// Plain C++ kernels of batch normalisation after a ReLU, y = BN(relu(x)), in
// training: no LibTorch here, so that the loops stay visible to the vectoriser.
// One call handles whole channels: a channel's B * P values (a convolution's
// output at batch 16 is 31 KB a channel) come from memory once and stay in
// cache for the later passes.
//
// Layouts (row-major): x, y, grad_y, grad_x [B, C, P] (P = H * W); weight,
// mean, invstd, grad_weight, grad_bias [C]. Arrays of uint16_t hold bfloat16
// (bf16_bits.h), computed in float: the bf16 stem's convolutions hand their
// output over, and take their input, without a conversion pass.

#include <cmath>
#include <cstdint>

namespace capsnet::cpu {

struct ChannelShape {
  int64_t images, channels, plane;  ///< B, C, P
};

/// One channel's output as relu(x) * scale + shift, from its batch statistics.
struct NormCoefficients {
  double invstd, scale, shift;
};
inline NormCoefficients norm_coefficients(double mean, double var, double eps, double weight,
                                          double bias) {
  const double inv = 1 / std::sqrt(var + eps);
  return {inv, inv * weight, bias - mean * inv * weight};
}

/// One channel's input gradient as a grad_y + d x + e where x > 0, from
/// sum_g = sum grad_y and sum_gd = sum grad_y (relu(x) - mean) over its n
/// values: with xhat = (relu(x) - mean) invstd, grad_x = weight invstd
/// (grad_y - sum_g / n - xhat sum_gd invstd / n).
struct GradCoefficients {
  double a, d, e;
};
inline GradCoefficients grad_coefficients(double weight, double mean, double invstd,
                                          double sum_g, double sum_gd, double n) {
  const double a = weight * invstd, d = -a * invstd * invstd * sum_gd / n;
  return {a, d, -a * sum_g / n - mean * d};
}

/// For channels [c_begin, c_end): r = max(x, 0); mean[c] and var[c] (the
/// biased variance) of r over its B * P values; invstd[c] = 1 / sqrt(var +
/// eps); y = (r - mean) * invstd * weight + bias.
#define CAPSNET_RELU_BN_FORWARD(X, Y, T)                                                        \
  void relu_batch_norm_forward(const ChannelShape& shape, int64_t c_begin, int64_t c_end,       \
                               const X* x, const T* weight, const T* bias, double eps, T* mean, \
                               T* var, T* invstd, Y* y)
CAPSNET_RELU_BN_FORWARD(float, float, float);
CAPSNET_RELU_BN_FORWARD(double, double, double);
CAPSNET_RELU_BN_FORWARD(uint16_t, uint16_t, float);
CAPSNET_RELU_BN_FORWARD(uint16_t, float, float);

/// Backward of relu_batch_norm_forward for channels [c_begin, c_end), with N = B * P
/// and xhat = (r - mean) * invstd: grad_bias = sum grad_y, grad_weight = sum
/// grad_y * xhat, grad_x = weight * invstd * (grad_y - grad_bias / N - xhat *
/// grad_weight / N) where x > 0, else 0. grad_y has y's type, grad_x x's.
#define CAPSNET_RELU_BN_BACKWARD(X, Y, T)                                                    \
  void relu_batch_norm_backward(const ChannelShape& shape, int64_t c_begin, int64_t c_end,   \
                                const X* x, const T* weight, const T* mean, const T* invstd, \
                                const Y* grad_y, X* grad_x, T* grad_weight, T* grad_bias)
CAPSNET_RELU_BN_BACKWARD(float, float, float);
CAPSNET_RELU_BN_BACKWARD(double, double, double);
CAPSNET_RELU_BN_BACKWARD(uint16_t, uint16_t, float);
CAPSNET_RELU_BN_BACKWARD(uint16_t, float, float);

/// Channels-last: x, y, grad_y, grad_x [N, C] (N = B * H * W pixels), cut
/// into blocks of kBlockRows pixels. Statistics are summed per block, into
/// part [blocks, C], and then over the blocks in order by the caller, so that
/// they do not depend on how the blocks were shared among threads. Each
/// function handles blocks [b_begin, b_end).
constexpr int64_t kBlockRows = 64;
struct RowsShape {
  int64_t rows, channels;  ///< N, C
  int64_t blocks() const { return (rows + kBlockRows - 1) / kBlockRows; }
};

/// part = sum relu(x) per block and channel, or with `mean`, sum (relu(x) - mean)^2.
#define CAPSNET_NHWC_SUMS(X)                                                               \
  void nhwc_block_sums(const RowsShape& shape, int64_t b_begin, int64_t b_end, const X* x, \
                       const float* mean, float* part)
CAPSNET_NHWC_SUMS(float);
CAPSNET_NHWC_SUMS(uint16_t);
/// y = relu(x) * scale + shift, per channel.
#define CAPSNET_NHWC_NORMALIZE(X, Y)                                                      \
  void nhwc_normalize(const RowsShape& shape, int64_t b_begin, int64_t b_end, const X* x, \
                      const float* scale, const float* shift, Y* y)
CAPSNET_NHWC_NORMALIZE(float, float);
CAPSNET_NHWC_NORMALIZE(uint16_t, uint16_t);
CAPSNET_NHWC_NORMALIZE(uint16_t, float);
/// part_g = sum grad_y and part_gd = sum grad_y (relu(x) - mean) per block and channel.
#define CAPSNET_NHWC_GRADIENT_SUMS(X, Y)                                                       \
  void nhwc_block_gradient_sums(const RowsShape& shape, int64_t b_begin, int64_t b_end,        \
                                const X* x, const Y* grad_y, const float* mean, float* part_g, \
                                float* part_gd)
CAPSNET_NHWC_GRADIENT_SUMS(float, float);
CAPSNET_NHWC_GRADIENT_SUMS(uint16_t, uint16_t);
CAPSNET_NHWC_GRADIENT_SUMS(uint16_t, float);
/// grad_x = a grad_y + d x + e where x > 0, else 0, per channel (a, d, e:
/// relu_batch_norm_backward's coefficients).
#define CAPSNET_NHWC_GRAD_INPUT(X, Y)                                                      \
  void nhwc_grad_input(const RowsShape& shape, int64_t b_begin, int64_t b_end, const X* x, \
                       const Y* grad_y, const float* a, const float* d, const float* e, X* grad_x)
CAPSNET_NHWC_GRAD_INPUT(float, float);
CAPSNET_NHWC_GRAD_INPUT(uint16_t, uint16_t);
CAPSNET_NHWC_GRAD_INPUT(uint16_t, float);

#undef CAPSNET_NHWC_SUMS
#undef CAPSNET_NHWC_NORMALIZE
#undef CAPSNET_NHWC_GRADIENT_SUMS
#undef CAPSNET_NHWC_GRAD_INPUT
#undef CAPSNET_RELU_BN_FORWARD
#undef CAPSNET_RELU_BN_BACKWARD

} // namespace capsnet::cpu
