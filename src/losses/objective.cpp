#include "capsnet/losses/objective.h"

namespace capsnet {

LossTerms CapsNetObjective::operator()(const at::Tensor& lengths, const at::Tensor& targets,
                                       const at::Tensor& reconstruction,
                                       const at::Tensor& recon_targets) const {
  LossTerms loss;
  loss.margin = margin_loss(lengths, targets, margin);
  loss.total = loss.margin;
  if (recon_weight > 0 && reconstruction.defined()) {
    loss.reconstruction = reconstruction_loss(reconstruction, recon_targets, recon_loss);
    loss.total = loss.total + recon_weight * loss.reconstruction;
  }
  return loss;
}

} // namespace capsnet
