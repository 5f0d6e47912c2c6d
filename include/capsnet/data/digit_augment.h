#pragma once

// The training-time augmentation of Efficient-CapsNet's MNIST pipeline
// (EscVM/Efficient-CapsNet at 4b337f5, utils/pre_process_mnist.py), in its
// order: random rotation, shift within the digit's margins, squish, erase.

#include <ATen/ATen.h>

#include <random>

namespace capsnet {

/// What one image's augmentation drew (for tests and figures).
struct DigitAugmentDraw {
  bool rotated = false;         ///< whether the rotation was applied (probability 1/2)
  int angle_degrees = 0;        ///< whole degrees, as the authors' int(angle)
  /// \var shift_y
  /// Rows the image moved down (negative: up).
  /// \var shift_x
  /// Columns the image moved right (negative: left).
  int64_t shift_y = 0, shift_x = 0;
  /// \var squish
  /// Columns removed by the squish.
  int64_t squish = 0, squish_offset = 0; ///< columns removed, left offset
  /// \var erase_row
  /// Top row of the 4x4 erased patch.
  int64_t erase_row = 0, erase_col = 0;  ///< top-left of the 4x4 erased patch
};

/// Augments image `image` (float [C, S, S], pixels >= 0, ink > 0) in place:
///  - with probability 1/2, a rotation about the centre by int(30 a) degrees,
///    a ~ N(0, 0.33) clipped to (-1, 1), bilinear, black outside;
///  - a shift along each axis towards a random side by floor(a m) pixels,
///    a = min(|N(0, 0.33)|, 0.9999) and m the digit's margin on that side
///    (+1 towards the bottom and right), so the ink stays inside;
///  - a squish: the width shrunk by w = floor(a S/4) + 1 columns (area
///    resampling where the authors use Lanczos-3) and placed w/2 + {0, 1}
///    columns from the left;
///  - a 4x4 patch set to 0 at a uniform row and column in [4, S - 5).
/// Returns what it drew.
DigitAugmentDraw augment_digit(at::Tensor& image, std::mt19937_64& rng);

/// augment_digit on each image of a batch: float [B, C, S, S] -> a new tensor.
at::Tensor augment_digits(const at::Tensor& images, std::mt19937_64& rng);

} // namespace capsnet
