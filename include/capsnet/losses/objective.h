#pragma once

#include "capsnet/losses/capsule_losses.h"

#include <ATen/ATen.h>

namespace capsnet {

/// The loss terms of one batch.
struct LossTerms {
  at::Tensor total;  ///< margin + recon_weight * reconstruction: what backward runs on
  at::Tensor margin; ///< the margin loss (Eq. 4)
  at::Tensor reconstruction; ///< unweighted; undefined when recon_weight is 0
};

/// The paper's training objective (Section 3 and 4.1): the margin loss of
/// Eq. 4 over the classes present, plus `recon_weight` (0.0005) times the
/// reconstruction loss of each reconstructed capsule against its target.
struct CapsNetObjective {
  MarginLossOptions margin;     ///< the margin loss's constants
  double recon_weight = 0.0005; ///< the reconstruction loss's weight; 0: none
  ReconstructionLoss recon_loss = ReconstructionLoss::kSumSquared; ///< how it is measured

  /// Shapes: lengths [B, K]; targets int64 [B] or multi-hot [B, K];
  /// reconstruction and recon_targets [B, C, H, W] or [B, P, C, H, W] (one
  /// per masked capsule); reconstruction may be undefined when recon_weight
  /// is 0. -> scalar terms.
  LossTerms operator()(const at::Tensor& lengths, const at::Tensor& targets,
                       const at::Tensor& reconstruction, const at::Tensor& recon_targets) const;
};

} // namespace capsnet
