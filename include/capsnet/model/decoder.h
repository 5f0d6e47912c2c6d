#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace capsnet {

/// The sizes of a Decoder.
struct DecoderOptions {
  /// K capsules of D values each, reconstructed as images of `image_shape` [C, H, W].
  DecoderOptions(int64_t num_capsules, int64_t capsule_dim, std::vector<int64_t> image_shape)
      : num_capsules_(num_capsules), capsule_dim_(capsule_dim), image_shape_(std::move(image_shape)) {}
  TORCH_ARG(int64_t, num_capsules);           ///< K digit capsules
  TORCH_ARG(int64_t, capsule_dim);            ///< D, 16 in the paper
  TORCH_ARG(std::vector<int64_t>, image_shape); ///< [C, H, W] of the reconstruction
  TORCH_ARG(std::vector<int64_t>, hidden) = {512, 1024}; ///< widths of the hidden ReLU layers
};

/// The reconstruction network of Section 4.1 (Figure 2): the digit capsules,
/// all but the chosen ones zeroed, through fully connected ReLU layers (512,
/// 1024) and a sigmoid layer of one unit per pixel.
/// Parameters are named 0.*, 2.*, 4.* (the seed's nn.Sequential indices).
struct DecoderImpl : torch::nn::Module {
  /// Builds the layers `options` describe; throws c10::Error unless image_shape is [C, H, W].
  explicit DecoderImpl(DecoderOptions options);

  /// Reconstructs each image from the capsules of `classes` alone.
  /// Shapes: capsules [B, K, D], classes [B] -> [B, C, H, W];
  ///         classes [B, P] (P capsules each, e.g. both digits of MultiMNIST)
  ///         -> [B, P, C, H, W], one reconstruction per masked capsule.
  at::Tensor forward(const at::Tensor& capsules, const at::Tensor& classes);

  DecoderOptions options;                ///< the sizes it was built for
  std::vector<torch::nn::Linear> layers; ///< the hidden layers, then the sigmoid layer
};
TORCH_MODULE(Decoder);

} // namespace capsnet
