#include "capsnet/losses/capsule_losses.h"

#include <c10/util/Exception.h>

#include <stdexcept>

namespace capsnet {

at::Tensor margin_loss(const at::Tensor& lengths, const at::Tensor& labels,
                       const MarginLossOptions& options) {
  TORCH_CHECK(lengths.dim() == 2, "expected lengths of shape [B, K], got ", lengths.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == lengths.size(0),
              "expected labels of shape [", lengths.size(0), "], got ", labels.sizes());
  auto present = at::zeros_like(lengths).scatter_(1, labels.unsqueeze(1), 1.0);
  auto positive = at::relu(options.m_plus - lengths);
  auto negative = at::relu(lengths - options.m_minus);
  if (options.squared) {
    positive = positive * positive;
    negative = negative * negative;
  }
  auto per_class = present * positive + options.lambda * (1 - present) * negative;
  return per_class.sum(1).mean();
}

std::string to_string(ReconstructionLoss loss) {
  return loss == ReconstructionLoss::kSumSquared ? "sse" : "mse";
}

ReconstructionLoss reconstruction_loss_from_string(const std::string& name) {
  if (name == "sse") return ReconstructionLoss::kSumSquared;
  if (name == "mse") return ReconstructionLoss::kMeanSquared;
  throw std::invalid_argument("unknown reconstruction loss '" + name +
                              "': expected 'sse' (the paper) or 'mse' (the seed)");
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
