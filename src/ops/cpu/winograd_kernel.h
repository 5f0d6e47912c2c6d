#pragma once

// Plain C++ kernels of the Winograd convolution (conv2d_winograd): no
// LibTorch here.
//
// A stride-2 9x9 convolution of an image with even sides is the sum of four
// stride-1 5x5 convolutions, one per phase (p, q) of the image
// (x[2i + p][2j + q]) with the matching phase of the kernel
// (w[2a + p][2b + q], zero where 2a + p = 9): 4C input channels of half the
// sides. Each 2x2 block of that stride-1 convolution's output is computed
// with Winograd's minimal filtering F(2x2, 5x5) (Lavin and Gray, 2016;
// interpolation points 0, 1, -1, 2, -2 and infinity):
//   y = A^T [ sum over input channels of (G g G^T) .* (B^T d B) ] A
// for a 6x6 input tile d and the 5x5 kernel g: 36 multiplications where the
// direct convolution makes 100, so the GEMMs over the channels do 2.25 times
// fewer multiply-adds than im2col's (100 taps of which 81 are the kernel's).
//
// Layouts (row-major, contiguous), for n images of a group:
//   x  [n, C, H, W]            float, as the convolution's input
//   V  [36, 4C, T * n]         transformed tiles; channel (p * 2 + q) * C + c,
//                              column t * n + image, t = ty * TW + tx
//   U  [36, O, 4C]             transformed weights, G g G^T
//   M  [36, O, T * n]          the GEMMs' products U V
//   y  [n, O, OH, OW]          float, OH = H / 2 - 4, OW = W / 2 - 4, both even

#include <cstdint>

namespace capsnet::cpu {

struct WinogradShape {
  int64_t channels, height, width; ///< of the input; kernel 9, stride 2
  int64_t phase_height() const { return height / 2; }
  int64_t phase_width() const { return width / 2; }
  int64_t out_height() const { return phase_height() - 4; }
  int64_t out_width() const { return phase_width() - 4; }
  int64_t tiles() const { return out_height() / 2 * (out_width() / 2); }
  int64_t phase_channels() const { return 4 * channels; }
};

/// Whether F(2x2, 5x5) on the phases computes this convolution: kernel 9,
/// stride 2, even sides and an output of even sides.
bool winograd_covers(int64_t height, int64_t width, int64_t kernel, int64_t stride);

/// V's channels from the n images at x: those of [c4_begin, c4_end) in the
/// order (c, p, q) (the four phases of channel c at 4c .. 4c + 3), a range
/// that covers whole input channels when its ends are multiples of 4.
void winograd_input(const WinogradShape& shape, const float* x, int64_t n, int64_t c4_begin,
                    int64_t c4_end, float* v);

/// The adjoint of winograd_input: grad_x's channels whose phases are
/// [c4_begin, c4_end) in the order (c, p, q), from grad_v (written, not added
/// to: a range must cover whole input channels).
void winograd_input_adjoint(const WinogradShape& shape, const float* grad_v, int64_t n,
                            int64_t c4_begin, int64_t c4_end, float* grad_x);

/// y's output channels [o_begin, o_end) from M, plus bias[o].
void winograd_output(const WinogradShape& shape, const float* m, int64_t n, int64_t out_channels,
                     int64_t o_begin, int64_t o_end, const float* bias, float* y);

/// The adjoint of winograd_output (without the bias): grad_m's output
/// channels [o_begin, o_end) from grad_y.
void winograd_output_adjoint(const WinogradShape& shape, const float* grad_y, int64_t n,
                             int64_t out_channels, int64_t o_begin, int64_t o_end,
                             float* grad_m);

/// U [36, O, 4C] = G g G^T for output channels [o_begin, o_end) of weight
/// [O, C, 9, 9], g the 5x5 kernel of a phase (zero past the 9x9 kernel).
void winograd_weights(const float* weight, int64_t out_channels, int64_t channels,
                      int64_t o_begin, int64_t o_end, float* u);

/// The adjoint of winograd_weights: grad_weight's output channels
/// [o_begin, o_end) from grad_u (written, not added to).
void winograd_weights_adjoint(const float* grad_u, int64_t out_channels, int64_t channels,
                              int64_t o_begin, int64_t o_end, float* grad_weight);

} // namespace capsnet::cpu
