#include "capsnet/engine/step.h"

#include <cmath>
#include <string>

namespace capsnet {

NonFiniteLoss::NonFiniteLoss(double value_)
    : TrainingError("non-finite loss (" + std::to_string(value_) + ")"), value(value_) {}

TrainStep::TrainStep(Task& task, torch::optim::Optimizer& optimizer, Replicas* replicas)
    : task_(task), optimizer_(optimizer), replicas_(replicas) {}

TaskOutput TrainStep::forward(const Batch& batch) {
  return task_.forward(batch, /*training=*/true);
}

void TrainStep::update(const TaskOutput& out, double share) {
  optimizer_.zero_grad();
  if (replicas_) replicas_->begin_gradients(share);
  if (out.loss.defined()) out.loss.backward();
  if (replicas_) replicas_->finish_gradients();
  if (on_gradients) on_gradients();
  optimizer_.step();
}

TaskOutput TrainStep::operator()(const Batch& batch) {
  auto out = forward(batch);
  const double loss = out.loss.item<double>();
  if (!std::isfinite(loss)) throw NonFiniteLoss(loss);
  update(out);
  out.loss = out.loss.detach();
  out.scores = out.scores.detach();
  return out;
}

} // namespace capsnet
