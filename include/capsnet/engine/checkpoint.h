#pragma once

#include "capsnet/registry/models.h"
#include "capsnet/registry/options.h"
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
  /// The accuracy best.pt was chosen on so far, in [0, 1]: the validation
  /// split's (--validation-split), else the test set's.
  double best_accuracy = -1;
  int64_t best_epoch = 0;          ///< best.pt's epoch (0: none yet, or not recorded)
  double best_test_accuracy = -1;  ///< the test accuracy of best.pt's epoch (-1: none)
  // Running sums of the current epoch, so that its metrics survive a resume.
  double epoch_loss_sum = 0; ///< the loss summed over the epoch's images so far
  int64_t epoch_correct = 0; ///< images of the epoch predicted right so far
  int64_t epoch_seen = 0;    ///< images of the epoch trained on so far
  double epoch_seconds = 0;  ///< seconds spent in the epoch's steps so far
  /// What the run trains and tests on (data_identity()); empty in checkpoints
  /// written before it was recorded.
  std::string data;
};

/// Writes model, optimizer (may be null), options, the data's shape and state
/// to `path` atomically: a temporary file beside it, then a rename. `model` is
/// the network options.model_name names, built for `shape`.
void save_checkpoint(const std::string& path, torch::nn::Module& model,
                     torch::optim::Optimizer* optimizer, const TrainOptions& options,
                     const DataShape& shape, const TrainingState& state);

/// The same for a CapsNet, built for images of its configuration's size,
/// channels and classes with one label each.
void save_checkpoint(const std::string& path, CapsNet& model, torch::optim::Optimizer* optimizer,
                     const TrainOptions& options, const TrainingState& state);

/// A checkpoint's network, built through its model's registry entry.
struct LoadedCheckpoint {
  const ModelInfo* info = nullptr; ///< the registry entry of options.model_name
  ModulePtr network;               ///< on the CPU as loaded
  TrainOptions options; ///< the options the run was trained with
  DataShape shape; ///< what the network was built for
  TrainingState state; ///< where the run stood when it was saved
  /// The capsnet that wrote it, "capsnet 0.1.0 (COMMIT)"; empty for
  /// checkpoints from before versions were recorded.
  std::string written_by;

  /// The network as a plain module.
  torch::nn::Module& module() { return *network; }
  /// The network with its objective as `with` describe (evaluation, training).
  std::unique_ptr<Task> task(const TrainOptions& with) const { return info->task(network, with); }
  /// The network with the objective of the options it was trained with.
  std::unique_ptr<Task> task() const { return task(options); }
  /// Throws CheckpointError unless the model offers `capability`, which `what`
  /// (a command) needs; the message names the model and the capability.
  void require(Capability capability, const std::string& what) const;
  /// The CapsNet, for commands that need its capsules: require(kCapsules, what).
  CapsNet capsnet(const std::string& what) const;
  /// The network as a capsule network (CapsNet, Efficient-CapsNet); throws
  /// CheckpointError naming `what` when its model offers no capsules.
  CapsuleNetworkPtr capsule_network(const std::string& what) const;
};

/// Reads a checkpoint written by save_checkpoint and builds its model.
/// Throws CheckpointError for a missing, corrupt or foreign file, or one whose
/// tensors do not match its own architecture.
LoadedCheckpoint load_checkpoint(const std::string& path);

/// Restores the optimizer state saved in `path` into `optimizer`.
void load_optimizer_state(const std::string& path, torch::optim::Optimizer& optimizer);

} // namespace capsnet
