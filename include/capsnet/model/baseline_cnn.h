#pragma once

// The baseline CNN of Table 1 (Section 5): three 5x5 convolutions of 256,
// 256 and 128 channels, stride 1, ReLU; two fully connected layers of 328 and
// 192 units; dropout; a softmax over the classes; cross-entropy. With "same"
// padding and no pooling it has 35,445,522 parameters on 28x28 inputs: the
// paper's 35.4M.

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace capsnet {

/// The architecture of a baseline CNN; the defaults are Table 1's MNIST network.
struct BaselineCnnConfig {
  int64_t image_size = 28;                              ///< square input images
  int64_t in_channels = 1;                              ///< channels of the input images
  int64_t num_classes = 10;                             ///< K, the classes scored
  std::vector<int64_t> conv_channels = {256, 256, 128}; ///< output channels of each convolution
  int64_t kernel = 5;                                   ///< convolution side, odd ("same" padding)
  /// 2x2 max pooling after these convolutions (indices; none by default).
  std::vector<int64_t> pool_after = {};
  std::vector<int64_t> hidden = {328, 192}; ///< units of each hidden fully connected layer
  double dropout = 0.5; ///< before the softmax layer

  /// Side of the last feature map.
  int64_t feature_side() const;
  /// The number of trainable parameters (weights and biases).
  int64_t parameter_count() const;
  /// Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(BaselineCnnConfig, image_size, in_channels,
                                                num_classes, conv_channels, kernel, pool_after,
                                                hidden, dropout)

/// Table 1's baseline CNN: ReLU convolutions, ReLU fully connected layers, dropout, logits.
struct BaselineCnnImpl : torch::nn::Module {
  /// Validates `config` (std::invalid_argument) and builds the layers it describes.
  explicit BaselineCnnImpl(BaselineCnnConfig config = {});
  /// images [B, C, H, W] -> logits [B, K].
  at::Tensor forward(const at::Tensor& images);

  BaselineCnnConfig config;             ///< the architecture it was built for
  std::vector<torch::nn::Conv2d> convs; ///< conv1, conv2, ... in order
  std::vector<torch::nn::Linear> fcs; ///< the hidden layers, then the output layer
  torch::nn::Dropout dropout{nullptr}; ///< before the output layer
};
TORCH_MODULE(BaselineCnn);

} // namespace capsnet
