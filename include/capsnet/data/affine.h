#pragma once

// The affine-robustness experiment (Section 5.2 of the paper): train on MNIST
// placed at random in a 40x40 black frame ("expanded MNIST"), test on digits
// transformed by random affine maps in affNIST's ranges. affNIST itself is not
// shipped by Debian or npm; this generator draws its transformations
// reproducibly from a seed instead (the ranges: docs/experiments.md, "affine").

#include "capsnet/data/batch.h"

#include <cstdint>

namespace capsnet {

/// affNIST's ranges: rotation within +-20 degrees, shear within +-0.2, scale
/// 0.8 to 1.2 (and translation anywhere the digit stays inside the frame).
struct AffineRanges {
  double rotation_degrees = 20; ///< the largest rotation either way, in degrees
  double shear = 0.2;           ///< the largest shear either way
  double min_scale = 0.8;       ///< the smallest scale drawn
  double max_scale = 1.2;       ///< the largest scale drawn
};

/// One digit's transformation: the map A = R(rotation) * [[1, shear], [0, 1]]
/// * scale about the frame's centre, then a whole-pixel translation (ty, tx).
struct AffineParams {
  /// \var rotation_degrees
  /// The angle of R, in degrees.
  /// \var shear
  /// The shear in A's [[1, shear], [0, 1]].
  /// \var scale
  /// A's scale factor, the same on both axes.
  double rotation_degrees = 0, shear = 0, scale = 1;
  /// \var ty
  /// Rows the transformed digit moves down (negative: up).
  /// \var tx
  /// Columns the transformed digit moves right (negative: left).
  int64_t ty = 0, tx = 0;
};

/// How FramedSource places its digits.
struct FramedOptions {
  int64_t frame = 40; ///< side of the generated images, in pixels
  bool affine = false; ///< false: translation only (expanded MNIST)
  AffineRanges ranges; ///< what affine transformations are drawn from
  uint64_t seed = 0; ///< the fixed (test) set's seed; training uses the step's stream
};

/// Digits in a larger black frame: images float [B, 1, F, F] in [0, 1], one
/// label each, the image itself as the reconstruction target. Translation
/// only: the 28x28 digit at a uniformly random position inside the frame.
/// Affine: the centred digit transformed by A (bilinear), then moved by a
/// whole-pixel translation drawn uniformly among those that keep its ink a
/// pixel clear of the frame's edge.
class FramedSource : public BatchSource {
 public:
  /// `base`: the digits to frame, no larger than the frame; throws for
  /// ranges that are negative or a min_scale not in (0, max_scale].
  FramedSource(Dataset base, FramedOptions options);
  int64_t size() const override { return base_.size(); }
  int64_t num_classes() const override { return base_.num_classes; }
  /// With `rng` (training): each digit's transformation drawn from it;
  /// without: the fixed transformation of example i (from the seed).
  Batch get(const at::Tensor& indices, std::mt19937_64* rng) const override;
  /// The transformation get() applies to example `index`.
  AffineParams params(int64_t index, std::mt19937_64* rng = nullptr) const;
  /// The options this source was made with.
  const FramedOptions& options() const { return options_; }

 private:
  Dataset base_;
  FramedOptions options_;
  at::Tensor ink_box_; // int64 [N, 4]: first row, last row, first column, last column of ink
};

/// Applies `params[b]` to image b of `digits` (float [B, 1, S, S]) centred in
/// a frame x frame image: [B, 1, frame, frame].
at::Tensor frame_and_transform(const at::Tensor& digits, const std::vector<AffineParams>& params,
                               int64_t frame);

} // namespace capsnet
