#include "capsnet/losses/capsule_losses.h"

#include <c10/util/Exception.h>

#include <stdexcept>

namespace capsnet {

at::Tensor margin_loss(const at::Tensor& lengths, const at::Tensor& targets,
                       const MarginLossOptions& options) {
  TORCH_CHECK(lengths.dim() == 2, "expected lengths of shape [B, K], got ", lengths.sizes());
  const bool labels = targets.dim() == 1 && !at::isFloatingType(targets.scalar_type());
  TORCH_CHECK((labels && targets.size(0) == lengths.size(0)) ||
                  (targets.dim() == 2 && targets.sizes() == lengths.sizes()),
              "expected int64 labels [", lengths.size(0), "] or multi-hot targets ",
              lengths.sizes(), ", got ", targets.sizes());
  auto present = labels ? at::zeros_like(lengths).scatter_(1, targets.unsqueeze(1), 1.0)
                        : targets.to(lengths.scalar_type());
  auto positive = at::relu(options.m_plus - lengths);
  auto negative = at::relu(lengths - options.m_minus);
  if (options.squared) {
    positive = positive * positive;
    negative = negative * negative;
  }
  auto per_class = present * positive + options.lambda * (1 - present) * negative;
  return per_class.sum(1).mean();
}

at::Tensor reconstruction_loss(const at::Tensor& reconstruction, const at::Tensor& target,
                               ReconstructionLoss kind) {
  TORCH_CHECK(reconstruction.numel() == target.numel() &&
                  reconstruction.size(0) == target.size(0),
              "reconstruction ", reconstruction.sizes(), " does not match target ",
              target.sizes());
  auto squared_error = (reconstruction.reshape({reconstruction.size(0), -1}) -
                        target.reshape({target.size(0), -1}))
                           .pow(2);
  if (kind == ReconstructionLoss::kMeanSquared) return squared_error.mean();
  return squared_error.sum(1).mean();
}

} // namespace capsnet
