#pragma once

#include "capsnet/data/batch.h"
#include "capsnet/engine/replicas.h"
#include "capsnet/registry/task.h"

#include <torch/optim/optimizer.h>

#include <functional>
#include <stdexcept>

namespace capsnet {

/// An error every rank of a data-parallel run raises at the same step (a
/// non-finite loss, agreed on): no rank needs to tell the others.
class AgreedTrainingError : public TrainingError {
 public:
  using TrainingError::TrainingError;
};

/// The loss of a step was NaN or infinite; the optimizer did not step.
class NonFiniteLoss : public TrainingError {
 public:
  /// The message names `value`.
  explicit NonFiniteLoss(double value);
  double value; ///< the loss
};

/// One optimisation step: forward -> loss -> backward -> on_gradients ->
/// optimizer step. The hook is the place for anything that must see the
/// gradients of the whole batch before the update: clipping, logging norms.
/// With `replicas` (data-parallel training), backward averages the gradients
/// over the ranks before the hook runs.
class TrainStep {
 public:
  /// Steps `optimizer` on `task`'s loss; `replicas`: null for one process.
  TrainStep(Task& task, torch::optim::Optimizer& optimizer, Replicas* replicas = nullptr);

  /// Called between backward and the optimizer step; may be empty.
  std::function<void()> on_gradients;

  /// Takes the step. Returns the task's output with the loss detached.
  /// Throws NonFiniteLoss (before any gradient is applied) when the loss is
  /// not finite.
  TaskOutput operator()(const Batch& batch);

  /// The two halves of operator(), for a loop that must agree with other
  /// ranks in between (on a non-finite loss, on stopping): the training
  /// forward pass, then backward, gradient averaging over the replicas
  /// (`share`: this rank's fraction of the global batch), on_gradients and
  /// the optimizer step. `out` may be empty when this rank has no images in
  /// the step: it then contributes zero gradients.
  TaskOutput forward(const Batch& batch);
  /// The second half of operator(): backward through `out` to the optimizer step.
  void update(const TaskOutput& out, double share = 1.0);

  /// The task it trains.
  Task& task() { return task_; }
  /// The optimizer it steps.
  torch::optim::Optimizer& optimizer() { return optimizer_; }

 private:
  Task& task_;
  torch::optim::Optimizer& optimizer_;
  Replicas* replicas_;
};

} // namespace capsnet
