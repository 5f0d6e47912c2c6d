#pragma once

// Efficient-CapsNet (Mazzia, Salvetti and Chiaberge, Scientific Reports 11,
// 2021) as its authors' code builds it: EscVM/Efficient-CapsNet at 4b337f5,
// models/efficient_capsnet_graph_mnist.py (the network and the generator)
// and utils/layers.py (PrimaryCaps, FCCaps, Squash).

#include "capsnet/layers/batch_norm.h"
#include "capsnet/model/capsule_network.h"
#include "capsnet/model/decoder.h"
#include "capsnet/ops/im2col_conv.h"

#include <nlohmann/json.hpp>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace capsnet {

/// The architecture; the defaults are the authors' MNIST network.
struct EfficientCapsNetConfig {
  int64_t image_size = 28;  ///< square input images
  int64_t in_channels = 1;  ///< channels of the input images
  int64_t num_classes = 10; ///< K, the class capsules
  /// The stem: valid convolutions, each followed by ReLU and batch normalisation.
  std::vector<int64_t> stem_channels = {32, 64, 64, 128};
  std::vector<int64_t> stem_kernels = {5, 3, 3, 3}; ///< each stem convolution's side
  std::vector<int64_t> stem_strides = {1, 1, 1, 2}; ///< each stem convolution's stride
  /// The primary capsules: a depthwise convolution as large as the stem's
  /// output grid leaves one value per channel, read as capsules of this size
  /// (128 channels / 8 = 16 capsules).
  int64_t primary_dim = 8;
  int64_t capsule_dim = 16; ///< class capsules' size
  std::vector<int64_t> decoder_hidden = {512, 1024}; ///< widths of the decoder's hidden layers
  /// Keras's BatchNormalization defaults: moving averages kept at 0.99.
  double bn_momentum = 0.01;
  double bn_eps = 1e-3; ///< added to the variance in batch normalisation (Keras's default)

  /// Side of the stem's output (9 for MNIST): the depthwise kernel's size.
  int64_t stem_grid() const;
  /// N_in of the routing: stem_channels.back() / primary_dim (16).
  int64_t num_primary_capsules() const;
  /// The network's trainable parameters, decoder excluded, from the sizes
  /// alone (161,824 for MNIST; see docs/efficient-capsnet.md).
  int64_t parameter_count() const;
  /// Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
  /// Whether every field is equal.
  bool operator==(const EfficientCapsNetConfig& other) const;
  /// Whether any field differs.
  bool operator!=(const EfficientCapsNetConfig& other) const { return !(*this == other); }
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(EfficientCapsNetConfig, image_size, in_channels,
                                                num_classes, stem_channels, stem_kernels,
                                                stem_strides, primary_dim, capsule_dim,
                                                decoder_hidden, bn_momentum, bn_eps)

/// conv1..conv4 (each ReLU then batch norm bn1..bn4) -> primary_capsules (a
/// depthwise convolution, squashed) -> the class capsules (u_hat = W u, then
/// self-attention routing; routing_weight [N_in, K, D_in, D], routing_bias
/// [N_in, K]: the authors' FCCaps W and b, transposed to N_in first) ->
/// the decoder (the authors' generator: 512 and 1024 ReLU units, sigmoid).
struct EfficientCapsNetImpl : CapsuleNetworkImpl {
  /// Validates `config` (std::invalid_argument) and builds the layers it describes.
  explicit EfficientCapsNetImpl(const EfficientCapsNetConfig& config = {});

  at::Tensor capsules(const at::Tensor& images) override;
  at::Tensor reconstruct(const at::Tensor& capsules, const at::Tensor& classes) override;
  CapsuleShape shape() const override {
    return {config.image_size, config.in_channels, config.num_classes, config.capsule_dim};
  }
  /// The self-attention coupling coefficients c [B, N_in, K] (softmax over K).
  at::Tensor coupling(const at::Tensor& images) override;

  /// Primary capsules [B, N_in, D_in] of `images`.
  at::Tensor primary(const at::Tensor& images);
  /// bf16: the stem's convolutions in bfloat16 (conv2d_in: oneDNN's bf16
  /// GEMMs on CPUs with AMX or AVX512-BF16, exactly widened fp32 elsewhere,
  /// cuDNN on a GPU), with fp32 weights, batch norms and everything after.
  void set_precision(Precision precision) override { precision_ = precision; }

  EfficientCapsNetConfig config;               ///< the architecture it was built for
  std::vector<torch::nn::Conv2d> convs;        ///< the stem's conv1..conv4
  std::vector<BatchNorm> norms;                ///< bn1..bn4, one after each stem convolution
  torch::nn::Conv2d primary_capsules{nullptr}; ///< the depthwise primary-capsule convolution
  /// W, the parameter routing_weight [N_in, K, D_in, D].
  at::Tensor weight, routing_bias; ///< b, the routing's bias [N_in, K]
  Decoder decoder{nullptr};        ///< the reconstruction network (the authors' generator)

 private:
  at::Tensor routed(const at::Tensor& images, at::Tensor* coupling);
  Precision precision_ = Precision::kFp32;
};
TORCH_MODULE(EfficientCapsNet);

} // namespace capsnet
