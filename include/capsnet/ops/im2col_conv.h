#pragma once

#include "capsnet/io/enum_names.h"
#include "capsnet/ops/cpu_features.h"

#include <ATen/ATen.h>

#include <iosfwd>
#include <string>

namespace capsnet {

/// Arithmetic of the heavy layers. Master weights, optimizer state, losses
/// and routing stay in fp32 either way.
enum class Precision {
  kFp32,
  kBf16, ///< the convolutions (conv1, primary capsules) in bfloat16 (conv2d_bf16)
};

CAPSNET_ENUM_NAMES(Precision, "precision", {{Precision::kFp32, "fp32"}, {Precision::kBf16, "bf16"}})

/// `requested`, or kFp32 with a message on `warnings` when it is kBf16, the
/// device is the CPU and this CPU lacks bf16 hardware (GPUs run bf16 in cuDNN).
Precision usable_precision(Precision requested, std::ostream& warnings,
                           const c10::Device& device = c10::Device(c10::kCPU));

/// How an fp32 convolution runs on the CPU.
enum class ConvAlgo {
  kAuto,   ///< the rule in conv_algo_for()
  kIm2col, ///< conv2d_im2col: our im2col/col2im + the BLAS sgemm, forward and backward
  kOneDnn, ///< LibTorch's own convolution (oneDNN on the CPU), forward and backward
  kMixed,  ///< oneDNN's forward, conv2d_im2col's backward
  kWinograd, ///< conv2d_winograd where it applies (stride-2 9x9), kAuto's choice elsewhere
};
CAPSNET_ENUM_NAMES(ConvAlgo, "convolution algorithm",
                   {{ConvAlgo::kAuto, "auto"},
                    {ConvAlgo::kIm2col, "im2col"},
                    {ConvAlgo::kOneDnn, "onednn"},
                    {ConvAlgo::kMixed, "mixed"},
                    {ConvAlgo::kWinograd, "winograd"}})
/// kAuto resolved for a convolution of `in_channels` input channels: kIm2col
/// for one channel; else kWinograd when `winograd_covered` (winograd_covers()
/// and an fp32 CPU tensor) and a `backward` will follow (training), else
/// kMixed. kWinograd where it is not `winograd_covered` as kAuto; other
/// values as given.
ConvAlgo conv_algo_for(ConvAlgo requested, int64_t in_channels, bool winograd_covered = false,
                       bool backward = false);

/// A 2-D fp32 convolution (no padding, square kernel) computed as im2col +
/// sgemm, a group of images at a time; backward recomputes the patches from x
/// (no patch matrix is kept between forward and backward) and gets grad_weight
/// and the patch gradient from two more sgemm, then col2im. With
/// `onednn_forward`, the forward is LibTorch's own convolution instead.
/// Shapes: x [B, C, H, W], weight [O, C, K, K], bias [O] -> [B, O, OH, OW].
at::Tensor conv2d_im2col(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         int64_t stride, bool onednn_forward = false);

/// Whether conv2d_winograd computes this convolution: a 9x9 kernel, stride
/// 2, even sides and an output of even sides (the paper's primary capsules:
/// 20x20 -> 6x6).
bool winograd_covers(const at::Tensor& x, const at::Tensor& weight, int64_t stride);
/// The same from the sizes: an input of height x width, a square kernel.
bool winograd_covers(int64_t height, int64_t width, int64_t kernel, int64_t stride);
/// The same fp32 convolution with 2.25 times fewer multiply-adds in its GEMMs:
/// split into the four stride-1 5x5 convolutions of the image's and the
/// kernel's phases (even/odd rows and columns), each computed by Winograd's
/// F(2x2, 5x5) (6x6 input tiles, 36 products for 4 outputs where direct
/// convolution makes 100), the products summed over the 4C phase channels by
/// 36 sgemm (src/ops/cpu/winograd_kernel.h). Backward transforms the output
/// gradient and recomputes the input's tiles, a group of images at a time, and
/// gets grad_weight and grad_x from two more batches of sgemm. Rounding
/// differs from the direct convolution's by the transforms' (their entries are
/// at most 5 and 1/24). Shapes as conv2d_im2col; only what winograd_covers().
at::Tensor conv2d_winograd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           int64_t stride);
/// A convolution (no padding, square kernel) by `algo`: conv2d_im2col for
/// float tensors on the CPU unless `algo` resolves to kOneDnn, else at::conv2d.
at::Tensor conv2d_fp32(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       int64_t stride, ConvAlgo algo);

/// The same convolution computed with bfloat16 GEMMs: x and weight are
/// rounded to bf16, products are accumulated in fp32 and rounded to bf16, the
/// bias is added in fp32. Gradients: grad_x and grad_weight from bf16 GEMMs of
/// the bf16-rounded output gradient, grad_bias in fp32. On AMX/AVX512-BF16
/// CPUs the GEMMs run in oneDNN at several times the fp32 throughput (oneDNN
/// 2.6's own bf16 convolution backward is slower than fp32 there). On other
/// CPUs (cpu_bf16_support()) the bf16 operands are widened exactly to fp32 and
/// multiplied by sgemm, which is the same arithmetic: ATen's own bf16 GEMM
/// there gave two to three times the errors of oneDNN's on an AVX2 CPU.
/// Shapes as conv2d_im2col.
at::Tensor conv2d_bf16(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       int64_t stride);

/// The convolution in `precision`: conv2d_bf16 on the CPU, cuDNN's bf16
/// convolution on bf16 copies of the fp32 weights on a GPU (fp32 out), or
/// conv2d_fp32 by `algo`.
at::Tensor conv2d_in(Precision precision, const at::Tensor& x, const at::Tensor& weight,
                     const at::Tensor& bias, int64_t stride, ConvAlgo algo);

} // namespace capsnet
