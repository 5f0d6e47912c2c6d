#pragma once

// Adam whose step count and learning rate live in tensors on the parameters'
// device, with the bias correction done as tensor math: what PyTorch's
// Adam(capturable=True) does. torch::optim::Adam keeps the step on the host
// and bakes lr / (1 - beta1^t) into each kernel's arguments, so a CUDA graph
// that captured its step would replay step 1's size for ever; this one
// captured replays the right step (update(), with set_lr's copy outside the
// graph). On the CPU each parameter takes one fused pass (m, v and the
// parameter in one loop) instead of six ATen operations.

#include <torch/optim/adam.h>
#include <torch/optim/optimizer.h>

#include <vector>

namespace capsnet {

/// Adam (Kingma & Ba, 2015) as torch::optim::Adam computes it, amsgrad and
/// weight decay excepted (refused). Its state saves and loads in
/// torch::optim::Adam's own format, so that either reads the other's
/// checkpoints. One step count serves every parameter: each parameter of
/// capsnet's models gets a gradient in every step; one without a gradient in
/// a step is skipped, as torch::optim::Adam skips it, but the count still
/// advances.
class Adam : public torch::optim::Optimizer {
 public:
  /// Adam over `params` (one group) with `options`' lr, betas and eps; the
  /// moments start at zero on the parameters' device.
  Adam(std::vector<at::Tensor> params, torch::optim::AdamOptions options = {});

  /// set_lr(), then update(). No closure.
  at::Tensor step(LossClosure closure = nullptr) override;
  /// Copies the first parameter group's lr (as LearningRateSchedule::apply
  /// sets it) into the device's lr tensor, when it changed: outside a
  /// captured graph, before each replay.
  void set_lr();
  /// One step with every scalar read from device tensors: no host
  /// synchronisation and nothing baked in, so it can be captured.
  void update();

  /// Writes the state in torch::optim::Adam's format (reads the step count
  /// from the device: a host synchronisation).
  void save(torch::serialize::OutputArchive& archive) const override;
  /// Reads torch::optim::Adam's format (this class's or torch::optim::Adam's
  /// checkpoints); throws std::runtime_error when the parameters' step counts
  /// differ.
  void load(torch::serialize::InputArchive& archive) override;

  /// Steps taken, read from the device (a host synchronisation).
  int64_t steps_taken() const;

 private:
  torch::optim::AdamOptions& options_();
  std::vector<at::Tensor> params_;
  std::vector<at::Tensor> exp_avg_, exp_avg_sq_;
  at::Tensor step_; ///< 0-dim double: steps taken
  at::Tensor lr_;   ///< 0-dim double: the learning rate of the next update
  double lr_on_device_ = -1;
};

} // namespace capsnet
