#pragma once

#include "capsnet/model/capsnet.h"
#include "capsnet/model/efficient_capsnet.h"

namespace capsnet {

/// Floating-point operations (2 per multiply-add) of one image, from the
/// model's shapes.
struct ModelFlops {
  /// conv1: the convolutions before the primary capsules (Efficient-CapsNet's stem).
  double conv1 = 0, primary = 0, prediction = 0, routing = 0, decoder = 0; ///< the decoder
  /// \var double ModelFlops::primary
  /// The primary capsules' convolution.
  /// \var double ModelFlops::prediction
  /// The prediction vectors u_hat = W u.
  /// \var double ModelFlops::routing
  /// The routing of u_hat to the class capsules.
  double first_layer = 0; ///< the layer on the image, whose input gradient is not needed
  /// One forward pass: the sum of the stages.
  double forward() const { return conv1 + primary + prediction + routing + decoder; }
  /// Forward plus backward: twice the forward for the gradients of the inputs
  /// and of the weights of every layer, less the first layer's input gradient
  /// (the image needs none).
  double training() const { return 3 * forward() - first_layer; }
};

ModelFlops model_flops(const CapsNetConfig& config);
/// Efficient-CapsNet's: the stem, the depthwise primary capsules, u_hat, the
/// self-attention routing (the sum over children, the logits and the
/// weighted sum, each N_in * K * D multiply-adds) and the decoder.
ModelFlops model_flops(const EfficientCapsNetConfig& config);

} // namespace capsnet
