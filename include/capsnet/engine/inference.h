#pragma once

#include "capsnet/data/dataset.h"
#include "capsnet/engine/models.h"
#include "capsnet/engine/options.h"
#include "capsnet/model/capsule_network.h"

#include <string>
#include <vector>

namespace capsnet {

/// What the network says about a batch of images.
struct Classification {
  at::Tensor capsules;    ///< digit capsules, [B, K, D]
  at::Tensor lengths;     ///< their lengths, the class probabilities, [B, K]
  at::Tensor predictions; ///< argmax of lengths, int64 [B]
};

/// A trained capsule network (CapsNet, Efficient-CapsNet) ready for inference: no gradients, eval mode, input
/// standardised when the model was trained so. Images are float [B, C, H, W]
/// with pixels in [0, 1], ink bright (as MNIST); see load_digit_image (viz/image.h) for files.
class Predictor {
 public:
  /// Reads a checkpoint written by `capsnet train`. Throws CheckpointError for
  /// a bad file, or one whose model lacks capsules or any of `needs`, naming
  /// the model and `what` (the command: "capsnet reconstruct").
  static Predictor load(const std::string& checkpoint, const std::string& what = "prediction",
                        const std::vector<Capability>& needs = {});
  /// `shape`: what the model was trained on (its class names, statistics and
  /// preparation); the default is MNIST's.
  Predictor(CapsuleNetworkPtr model, TrainOptions options, DataShape shape = {});

  /// A picture file's bytes (PNG, JPEG, PGM/PPM, BMP, GIF) prepared as the
  /// model's training data was: float [1, C, S, S] in [0, 1]. Digit models
  /// (Preparation::kDigit): as MNIST was made (prepare_digit_image); others:
  /// converted to the model's channels, resized and centre-cropped. Throws
  /// ImageError naming `name`.
  at::Tensor prepare_picture(const std::string& bytes, const std::string& name) const;

  /// Runs in chunks of `batch_size` images.
  Classification classify(const at::Tensor& images) const;
  /// Decoder output from `capsules` masked to `classes`: [B, C, H, W] in [0, 1].
  at::Tensor reconstruct(const at::Tensor& capsules, const at::Tensor& classes) const;

  /// The routing's coupling coefficients of `images`, [B, N_in, K], or an
  /// undefined tensor when the network has none to show (CapsuleNetworkImpl::coupling).
  at::Tensor coupling(const at::Tensor& images) const;

  /// Moves the model; inputs follow it and results come back on the CPU.
  void to(const c10::Device& device);

  const CapsuleNetworkPtr& model() const { return model_; }
  /// The network's input and capsule sizes.
  CapsuleShape sizes() const { return model_->shape(); }
  const TrainOptions& options() const { return options_; }
  const DataShape& shape() const { return shape_; }
  /// The name of class k (DataShape::class_name).
  std::string class_name(int64_t k) const { return shape_.class_name(k); }
  int64_t batch_size = 500;

 private:
  CapsuleNetworkPtr model_;
  TrainOptions options_;
  DataShape shape_;
  c10::Device device_{c10::kCPU};
};

/// Dataset images (uint8 [N, 1, H, W]) as float in [0, 1].
at::Tensor to_unit_float(const at::Tensor& images);

} // namespace capsnet
