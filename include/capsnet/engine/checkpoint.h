#pragma once

#include "capsnet/engine/options.h"
#include "capsnet/model/capsnet.h"

#include <torch/optim/adam.h>

#include <stdexcept>
#include <string>

namespace capsnet {

/// A checkpoint that cannot be used: missing, corrupt, not ours, or for
/// another architecture. The message names the file and what to do.
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Where a training run stands; saved in every checkpoint so that a resumed
/// run continues exactly where it stopped.
struct TrainingState {
  int64_t epoch = 0;         ///< epochs completed
  int64_t step_in_epoch = 0; ///< steps of the current epoch already taken
  int64_t global_step = 0;   ///< steps taken in all
  double best_accuracy = -1; ///< best test accuracy so far, in [0, 1]
  // Running sums of the current epoch, so that its metrics survive a resume.
  double epoch_loss_sum = 0;
  int64_t epoch_correct = 0;
  int64_t epoch_seen = 0;
  double epoch_seconds = 0;
  /// What the run trains and tests on (data_identity()); empty in checkpoints
  /// written before it was recorded.
  std::string data;
};

/// Writes model, optimizer (may be null), options and state to `path`
/// atomically: a temporary file beside it, then a rename. `model` is the
/// network options.model_kind names.
void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     torch::optim::Adam* optimizer, const TrainOptions& options,
                     const TrainingState& state);
void save_checkpoint(const std::string& path, CapsNet& model, torch::optim::Adam* optimizer,
                     const TrainOptions& options, const TrainingState& state);

struct LoadedCheckpoint {
  CapsNet model{nullptr};          ///< set for a CapsNet checkpoint
  BaselineCnn baseline{nullptr};   ///< set for a baseline-cnn checkpoint
  TrainOptions options;
  TrainingState state;
  /// The network, whichever it is.
  torch::nn::Module& module() {
    return model ? static_cast<torch::nn::Module&>(*model) : *baseline;
  }
  /// Throws CheckpointError unless this is a CapsNet's: `what` needs capsules.
  CapsNet& capsnet(const std::string& what);
};

/// Reads a checkpoint written by save_checkpoint and builds its model.
/// Throws CheckpointError for a missing, corrupt or foreign file, or one whose
/// tensors do not match its own architecture.
LoadedCheckpoint load_checkpoint(const std::string& path);

/// Restores the optimizer state saved in `path` into `optimizer`.
void load_optimizer_state(const std::string& path, torch::optim::Adam& optimizer);

} // namespace capsnet
