#pragma once

// What every capsule network in capsnet offers (CapsNet, Efficient-CapsNet):
// class capsules from images, and a decoder back to images. The task, the
// predictor, predict, reconstruct, perturb and serve use this interface and
// know no model by name.

#include "capsnet/ops/fused_routing.h"
#include "capsnet/ops/im2col_conv.h"

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <functional>
#include <memory>

namespace capsnet {

/// What a capsule network's forward pass gives (CapsuleNetworkImpl::forward).
struct CapsNetOutput {
  at::Tensor capsules;       ///< class capsules v_j, [B, K, D]
  at::Tensor lengths;        ///< |v_j|, the class probabilities, [B, K]
  at::Tensor predictions;    ///< argmax of lengths, [B] int64
  /// Decoder output in [0, 1]: [B, C, H, W], or [B, P, C, H, W] when the mask
  /// names P classes per image; undefined if not asked.
  at::Tensor reconstruction;
};

/// The sizes a capsule network takes and gives.
struct CapsuleShape {
  int64_t image_size = 28; ///< square input images
  int64_t in_channels = 1; ///< channels of the input images
  int64_t num_classes = 10; ///< K class capsules
  int64_t capsule_dim = 16; ///< D
};

/// A capsule network: class capsules from images, and a decoder back to images.
struct CapsuleNetworkImpl : torch::nn::Module {
  /// Shapes: images [B, C, H, W] -> class capsules [B, K, D].
  virtual at::Tensor capsules(const at::Tensor& images) = 0;

  /// The decoder on the capsules with all but the chosen classes' zeroed.
  /// Shapes: capsules [B, K, D], classes [B] -> [B, C, H, W], or classes
  /// [B, P] -> [B, P, C, H, W] (see Decoder).
  virtual at::Tensor reconstruct(const at::Tensor& capsules, const at::Tensor& classes) = 0;

  /// The sizes it takes and gives.
  virtual CapsuleShape shape() const = 0;

  /// The routing's coupling coefficients for `images`, [B, N_in, K], as the
  /// network's last forward pass computed them (the figure of attention).
  /// Networks whose routing has none to show return an undefined tensor.
  virtual at::Tensor coupling(const at::Tensor& images) { return {}; }

  /// Full forward pass. The decoder is masked by `mask_classes` ([B] or
  /// [B, P]) when given (the true labels in training), else by the prediction;
  /// `with_reconstruction` false skips the decoder.
  CapsNetOutput forward(const at::Tensor& images, const at::Tensor& mask_classes = {},
                        bool with_reconstruction = true);

  /// What calibrate() measured and set.
  struct Calibration {
    /// (1/K) E_b[sum_i |u_i|_1] on the batch: how far one Adam step, which
    /// moves every W_ij by about lr in the direction of its gradient, moves
    /// s_j (the K class capsules share the routing's input at the start).
    double drive = 0;
    double scale = 1; ///< the factor now on the routing's input (1: untouched)
  };
  /// The drive above which calibrate() scales the routing's input down, to
  /// kTargetDrive: about twice and about half the paper's MNIST network's
  /// (24 at the start), so that MNIST is untouched with a margin and a
  /// calibrated network starts with one.
  static constexpr double kMaxDrive = 50, kTargetDrive = 12; ///< calibrate()'s target drive
  /// A data-dependent start, in the manner of LSUV (Mishkin & Matas, 2016):
  /// measures the drive on `images` ([B, C, H, W], a training batch) and,
  /// above kMaxDrive, scales the routing's input by kTargetDrive / drive. Why:
  /// a picture on a coloured background gives nearly the same primary capsule
  /// at thousands of positions, every W_ij of which Adam moves by about lr a
  /// step, so that s_j jumps with the picture's area until every class capsule
  /// saturates and the margin loss has no gradient left. The paper's MNIST
  /// network, with its black background, is below the bound and untouched.
  /// Networks without such a factor return {} and are left as they are.
  virtual Calibration calibrate(const at::Tensor& images) { return {}; }

  /// How the network computes; not part of its architecture. Networks
  /// without the choice ignore it.
  virtual void set_routing_impl(RoutingImpl impl) {}
  /// Chooses the arithmetic of the convolutions; ignored without the choice.
  virtual void set_precision(Precision precision) {}
  /// Chooses how the fp32 convolutions run on the CPU; ignored without the choice.
  virtual void set_conv_algo(ConvAlgo algo) {}

  /// Called with a stage's name and output as each stage of the forward pass
  /// ends ("conv1", "primary_capsules", "digit_capsules", "decoder"): for
  /// profiling (a hook on the output's gradient marks where the stage's
  /// backward begins).
  std::function<void(const char*, const at::Tensor&)> stage_hook;

 protected:
  /// Calls stage_hook, when set, with `name` and `output`.
  void stage(const char* name, const at::Tensor& output) const {
    if (stage_hook) stage_hook(name, output);
  }
  /// Throws c10::Error unless `images` is [B, C, H, W] of the network's size.
  void check_images(const at::Tensor& images) const;
};

using CapsuleNetworkPtr = std::shared_ptr<CapsuleNetworkImpl>;

} // namespace capsnet
