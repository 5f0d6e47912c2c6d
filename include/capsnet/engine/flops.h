#pragma once

#include "capsnet/model/capsnet.h"

namespace capsnet {

/// Floating-point operations (2 per multiply-add) of one image, from the
/// model's shapes.
struct ModelFlops {
  double conv1 = 0, primary = 0, prediction = 0, routing = 0, decoder = 0;
  double forward() const { return conv1 + primary + prediction + routing + decoder; }
  /// Forward plus backward: twice the forward for the gradients of the inputs
  /// and of the weights of every layer, less conv1's input gradient (the image
  /// needs none).
  double training() const { return 3 * forward() - conv1; }
};

ModelFlops model_flops(const CapsNetConfig& config);

} // namespace capsnet
