#pragma once

#include "capsnet/layers/digit_capsules.h"
#include "capsnet/layers/primary_capsules.h"
#include "capsnet/model/capsule_network.h"
#include "capsnet/model/decoder.h"
#include "capsnet/ops/dynamic_routing.h"

#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <vector>

namespace capsnet {

/// The architecture of a CapsNet. Every size follows from these fields; the
/// defaults are the paper's MNIST network (Section 4, Figure 1 and 2).
struct CapsNetConfig {
  int64_t image_size = 28; ///< square input images
  int64_t in_channels = 1;        ///< channels of the input images
  int64_t num_classes = 10;       ///< K, the digit capsules
  int64_t conv1_channels = 256;   ///< conv1's output channels
  int64_t conv1_kernel = 9;       ///< conv1's side (stride 1, no padding)
  int64_t primary_types = 32;     ///< primary capsule types (channels / primary_dim)
  int64_t primary_dim = 8;        ///< D_in, the primary capsules' length
  int64_t primary_kernel = 9;     ///< the primary-capsule convolution's side
  int64_t primary_stride = 2;     ///< the primary-capsule convolution's stride
  int64_t digit_dim = 16;         ///< D, the digit capsules' length
  int64_t routing_iterations = 3; ///< r of Procedure 1
  RoutingSoftmax routing_softmax = RoutingSoftmax::kParents; ///< the axis c_ij normalise over
  bool digit_bias = false;  ///< a learned bias on s_j before squash (DigitCapsulesOptions::bias)
  double w_init_std = 0.01; ///< W_ij ~ N(0, w_init_std^2)
  /// The factor on the digit capsules' input (DigitCapsulesOptions::
  /// input_scale): 1, or what calibrate() set for a new run's data.
  double routing_input_scale = 1.0;
  std::vector<int64_t> decoder_hidden = {512, 1024}; ///< widths of the decoder's hidden layers

  /// Side of the primary-capsule grid: 6 for the paper's MNIST network.
  int64_t primary_grid() const;
  /// N_in of the digit capsules: 32 * 6 * 6 = 1152 in the paper.
  int64_t num_primary_capsules() const;
  /// Throws std::invalid_argument naming the first inconsistent field.
  void validate() const;
  /// Whether every field is equal (as their JSON).
  bool operator==(const CapsNetConfig& other) const;
  /// Whether any field differs.
  bool operator!=(const CapsNetConfig& other) const { return !(*this == other); }
};

/// JSON with the field names as keys (config.json, checkpoints, exports).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(CapsNetConfig, image_size, in_channels, num_classes,
                                                conv1_channels, conv1_kernel, primary_types,
                                                primary_dim, primary_kernel, primary_stride,
                                                digit_dim, routing_iterations, routing_softmax,
                                                digit_bias, w_init_std, decoder_hidden,
                                                routing_input_scale)

/// The capsule network of Sabour et al. (2017): conv1 -> PrimaryCapsules ->
/// DigitCapsules with dynamic routing (Procedure 1) -> masked Decoder (Section 4.1).
/// Parameter names map one-to-one onto the seed's: conv1.*, primary_capsules.conv.*
/// (the seed's conv2.*), digit_capsules.weight, decoder.{0,2,4}.*.
struct CapsNetImpl : CapsuleNetworkImpl {
  /// Validates `config` (std::invalid_argument) and builds the layers it describes.
  explicit CapsNetImpl(const CapsNetConfig& config = {});

  /// Shapes: images [B, C, H, W] -> digit capsules [B, K, D].
  at::Tensor capsules(const at::Tensor& images) override;
  /// conv1 and the primary capsules: images [B, C, H, W] -> u [B, N_in, D_in].
  at::Tensor primary(const at::Tensor& images);
  /// The masked decoder (Section 4.1); see CapsuleNetworkImpl::reconstruct.
  at::Tensor reconstruct(const at::Tensor& capsules, const at::Tensor& classes) override;
  /// The configuration's image size, channels, classes and digit-capsule length.
  CapsuleShape shape() const override {
    return {config.image_size, config.in_channels, config.num_classes, config.digit_dim};
  }

  /// Sets config.routing_input_scale from the primary capsules of `images`
  /// (see CapsuleNetworkImpl::calibrate).
  Calibration calibrate(const at::Tensor& images) override;
  /// Chooses the routing implementation; not part of the architecture.
  void set_routing_impl(RoutingImpl impl) override { digit_capsules->options.impl(impl); }
  /// Chooses the primary-capsule convolution's arithmetic; not part of the architecture.
  void set_precision(Precision precision) override {
    primary_capsules->options.precision(precision);
  }
  /// Chooses how conv1 and the primary-capsule convolution run in fp32 on the CPU.
  void set_conv_algo(ConvAlgo algo) override { primary_capsules->options.conv_algo(algo); }

  CapsNetConfig config;                      ///< the architecture it was built for
  torch::nn::Conv2d conv1{nullptr};          ///< the first convolution, with ReLU
  PrimaryCapsules primary_capsules{nullptr}; ///< u [B, N_in, D_in]
  DigitCapsules digit_capsules{nullptr};     ///< v [B, K, D], by dynamic routing
  Decoder decoder{nullptr};                  ///< the reconstruction network (Section 4.1)
};
TORCH_MODULE(CapsNet);

} // namespace capsnet
