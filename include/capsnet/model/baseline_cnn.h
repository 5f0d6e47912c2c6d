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

struct BaselineCnnConfig {
  int64_t image_size = 28;
  int64_t in_channels = 1;
  int64_t num_classes = 10;
  std::vector<int64_t> conv_channels = {256, 256, 128};
  int64_t kernel = 5;
  /// 2x2 max pooling after these convolutions (indices; none by default).
  std::vector<int64_t> pool_after = {};
  std::vector<int64_t> hidden = {328, 192};
  double dropout = 0.5; ///< before the softmax layer

  /// Side of the last feature map.
  int64_t feature_side() const;
  int64_t parameter_count() const;
  /// Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(BaselineCnnConfig, image_size, in_channels,
                                                num_classes, conv_channels, kernel, pool_after,
                                                hidden, dropout)

struct BaselineCnnImpl : torch::nn::Module {
  explicit BaselineCnnImpl(BaselineCnnConfig config = {});
  /// images [B, C, H, W] -> logits [B, K].
  at::Tensor forward(const at::Tensor& images);

  BaselineCnnConfig config;
  std::vector<torch::nn::Conv2d> convs;
  std::vector<torch::nn::Linear> fcs; ///< the hidden layers, then the output layer
  torch::nn::Dropout dropout{nullptr};
};
TORCH_MODULE(BaselineCnn);

} // namespace capsnet
