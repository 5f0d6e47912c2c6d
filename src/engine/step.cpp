#include "capsnet/engine/step.h"

#include <cmath>
#include <string>

namespace capsnet {

NonFiniteLoss::NonFiniteLoss(double value_)
    : TrainingError("non-finite loss (" + std::to_string(value_) + ")"), value(value_) {}

TrainStep::TrainStep(Task& task, torch::optim::Optimizer& optimizer)
    : task_(task), optimizer_(optimizer) {}

TaskOutput TrainStep::operator()(const Batch& batch) {
  auto out = task_.forward(batch, /*training=*/true);
  const double loss = out.loss.item<double>();
  if (!std::isfinite(loss)) throw NonFiniteLoss(loss);
  optimizer_.zero_grad();
  out.loss.backward();
  if (on_gradients) on_gradients();
  optimizer_.step();
  out.loss = out.loss.detach();
  out.scores = out.scores.detach();
  return out;
}

} // namespace capsnet
