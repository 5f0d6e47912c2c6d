#include "capsnet/registry/task.h"

namespace capsnet {

CapsNetTask::CapsNetTask(CapsuleNetworkPtr model, CapsNetObjective objective, DecoderMask mask)
    : model_(std::move(model)), objective_(objective), mask_(mask) {}

CapsNetTask::CapsNetTask(CapsuleNetworkPtr model, const TrainOptions& options)
    : CapsNetTask(std::move(model), options.objective(), options.mask) {}

TaskOutput CapsNetTask::forward(const Batch& batch, bool training) {
  const bool reconstruct = objective_.recon_weight > 0;
  const bool by_label = training && mask_ == DecoderMask::kLabel;
  const bool several = batch.labels.dim() == 2;
  CapsNetOutput out;
  if (by_label || !several) {
    out = model_->forward(batch.images, by_label ? batch.labels : at::Tensor(), reconstruct);
  } else { // masked by the P longest capsules
    out = model_->forward(batch.images, {}, /*with_reconstruction=*/false);
    if (reconstruct) {
      out.reconstruction = model_->reconstruct(
          out.capsules, std::get<1>(out.lengths.topk(batch.labels.size(1), /*dim=*/1)));
    }
  }
  const auto terms = objective_(out.lengths, batch.targets, out.reconstruction, batch.recon_targets);
  return {terms.total, out.lengths};
}

TaskOutput BaselineCnnTask::forward(const Batch& batch, bool training) {
  const auto logits = model_->forward(batch.images);
  at::Tensor loss;
  if (batch.labels.dim() == 1) {
    loss = at::cross_entropy_loss(logits, batch.labels);
  } else { // P labels: the target distribution puts 1/P on each
    const auto target = batch.targets / batch.targets.sum(1, /*keepdim=*/true);
    loss = -(target * at::log_softmax(logits, 1)).sum(1).mean();
  }
  return {loss, at::softmax(logits, 1)};
}

} // namespace capsnet
