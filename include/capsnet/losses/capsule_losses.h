#pragma once

#include <ATen/ATen.h>

#include <string>

namespace capsnet {

struct MarginLossOptions {
  double m_plus = 0.9;
  double m_minus = 0.1;
  double lambda = 0.5;
  /// Eq. 4 squares both hinge terms; the seed does not.
  bool squared = true;
};

/// Margin loss, Eq. 4 of the paper:
///   L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2,
/// summed over the classes k and averaged over the batch.
/// Shapes: lengths [B, K] (capsule lengths |v_k|), labels [B] (int64) -> scalar.
at::Tensor margin_loss(const at::Tensor& lengths, const at::Tensor& labels,
                       const MarginLossOptions& options = {});

enum class ReconstructionLoss {
  /// Sum of squared errors per image, averaged over the batch (the paper).
  kSumSquared,
  /// Mean squared error over every pixel of the batch (the seed's nn.MSELoss).
  kMeanSquared,
};

std::string to_string(ReconstructionLoss loss);
/// Parses "sse" or "mse"; throws std::invalid_argument otherwise.
ReconstructionLoss reconstruction_loss_from_string(const std::string& name);

/// Unweighted reconstruction loss (Section 4.1; the paper scales it by 0.0005).
/// Shapes: reconstruction [B, ...], target [B, ...] with the same number of
/// elements per image -> scalar.
at::Tensor reconstruction_loss(const at::Tensor& reconstruction, const at::Tensor& target,
                               ReconstructionLoss kind = ReconstructionLoss::kSumSquared);

} // namespace capsnet
