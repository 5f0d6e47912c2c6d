#pragma once

#include "capsnet/io/enum_names.h"

#include <ATen/ATen.h>

#include <string>

namespace capsnet {

/// The constants of the margin loss (Eq. 4), at the paper's values.
struct MarginLossOptions {
  double m_plus = 0.9;  ///< m+: a present class's length is pushed above it
  double m_minus = 0.1; ///< m-: an absent class's length is pushed below it
  double lambda = 0.5;  ///< down-weights the absent classes' term
  /// Eq. 4 squares both hinge terms; the seed does not.
  bool squared = true;
};

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(MarginLossOptions, m_plus, m_minus, lambda, squared)

/// Margin loss, Eq. 4 of the paper:
///   L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2,
/// summed over the classes k and averaged over the batch. T_k = 1 for every
/// class present: one per image (MNIST) or several (MultiMNIST).
/// Shapes: lengths [B, K] (capsule lengths |v_k|), targets either int64 [B]
/// (one label per image) or float [B, K] multi-hot -> scalar.
at::Tensor margin_loss(const at::Tensor& lengths, const at::Tensor& targets,
                       const MarginLossOptions& options = {});

/// How reconstruction_loss measures the error.
enum class ReconstructionLoss {
  /// Sum of squared errors per image, averaged over the batch (the paper).
  kSumSquared,
  /// Mean squared error over every pixel of the batch (the seed's nn.MSELoss).
  kMeanSquared,
};

CAPSNET_ENUM_NAMES(ReconstructionLoss, "reconstruction loss",
                   {{ReconstructionLoss::kSumSquared, "sse"}, {ReconstructionLoss::kMeanSquared, "mse"}})

/// Unweighted reconstruction loss (Section 4.1; the paper scales it by 0.0005).
/// Shapes: reconstruction [B, ...], target [B, ...] with the same number of
/// elements per image -> scalar. With several reconstructions per image
/// ([B, P, C, H, W]) the sum of squares runs over all of them.
at::Tensor reconstruction_loss(const at::Tensor& reconstruction, const at::Tensor& target,
                               ReconstructionLoss kind = ReconstructionLoss::kSumSquared);

} // namespace capsnet
