#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "capsnet/ops/im2col_conv.h"

namespace capsnet {

/// The sizes and settings of a PrimaryCapsules layer.
struct PrimaryCapsulesOptions {
  /// The three sizes, each option below at its default.
  PrimaryCapsulesOptions(int64_t in_channels, int64_t num_types, int64_t capsule_dim)
      : in_channels_(in_channels), num_types_(num_types), capsule_dim_(capsule_dim) {}
  /// C, the input's channels: 256 in the paper.
  TORCH_ARG(int64_t, in_channels);
  /// Capsule types: 32 in the paper (each a 6x6 grid of capsules on MNIST).
  TORCH_ARG(int64_t, num_types);
  /// Dimensions of each primary capsule: 8 in the paper.
  TORCH_ARG(int64_t, capsule_dim);
  /// The convolution's kernel side: 9 in the paper.
  TORCH_ARG(int64_t, kernel_size) = 9;
  /// The convolution's stride: 2 in the paper.
  TORCH_ARG(int64_t, stride) = 2;
  /// kBf16: the convolution runs as conv2d_bf16 (CPU); the weights stay fp32.
  TORCH_ARG(Precision, precision) = Precision::kFp32;
  /// How the convolution runs in fp32 on the CPU (conv_algo_for()).
  TORCH_ARG(ConvAlgo, conv_algo) = ConvAlgo::kAuto;
};

/// PrimaryCapsules (Section 4): one convolution with num_types * capsule_dim
/// output channels, grouped into capsules and squashed (Eq. 1).
/// The grouping is the seed's: the conv output [B, D * T, H, W] is viewed as
/// [B, D, T * H * W] and transposed, so that capsule i's component d is channel
/// d * T + i / (H * W) at spatial position i % (H * W).
/// Shapes: [B, C, H_in, W_in] -> [B, T * H * W, D].
struct PrimaryCapsulesImpl : torch::nn::Module {
  /// Makes the convolution: in_channels -> num_types * capsule_dim channels.
  explicit PrimaryCapsulesImpl(const PrimaryCapsulesOptions& options);
  /// Shapes: x [B, C, H_in, W_in] -> squashed capsules [B, T * H * W, D].
  at::Tensor forward(const at::Tensor& x);

  PrimaryCapsulesOptions options;   ///< the layer's sizes and settings
  torch::nn::Conv2d conv{nullptr};  ///< weight [D * T, C, k, k] and bias [D * T]
};
TORCH_MODULE(PrimaryCapsules);

} // namespace capsnet
