#pragma once

// The trainer's parts that decide *when* and *what*, each replaceable on its
// own: the learning-rate schedule, evaluation, checkpoints and logging. In
// data-parallel training every rank but 0 gets an empty CheckpointPolicy and
// a silent TrainLogger.

#include "capsnet/data/batch.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/epoch_record.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/progress.h"

#include <torch/optim/optimizer.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace capsnet {

/// lr(t) = max(minimum, initial * decay_per_epoch^(t / steps_per_epoch)) at global step t,
/// set before every step. The authors' code multiplies lr by 0.96 every 2,000
/// steps of 128 images: 0.9905 per MNIST epoch.
struct LearningRateSchedule {
  double initial = 1e-3;        ///< lr at step 0
  double decay_per_epoch = 1.0; ///< factor lr is multiplied by per epoch
  double minimum = 0; ///< the floor lr never goes below

  /// lr at `global_step`, with `steps_per_epoch` steps to an epoch.
  double at(int64_t global_step, int64_t steps_per_epoch) const;
  /// Sets every parameter group's learning rate.
  static void apply(torch::optim::Optimizer& optimizer, double lr);
};

/// Evaluation after every epoch on `source`, the test set (none when null),
/// and on `validation`, examples held out of training (none when null).
struct EvalPolicy {
  const BatchSource* source = nullptr; ///< the test set; null: no test evaluation
  int64_t batch_size = 500;            ///< images per evaluation batch
  /// When set, best.pt is chosen on it; the test set is only reported.
  const BatchSource* validation = nullptr;
};

/// "Precise batch norm" (as pycls and Detectron do): at the end of every
/// epoch, before evaluation, every BatchNorm's running statistics are
/// recomputed as the average over `images` training examples (the test-time
/// preparation, in batches of `batch_size`, a new draw each epoch) of the
/// current weights' batch statistics. A momentum average (Keras's 0.99) is
/// still mostly its initial values after the few dozen steps of a small data
/// set; this is right after any number. Training itself is unchanged: batch
/// norm trains on each batch's own statistics. 0 images: off.
struct BatchNormPolicy {
  int64_t images = 1024;    ///< training examples the statistics average over (0: off)
  int64_t batch_size = 256; ///< images per batch while recomputing them
};

/// The line that says a capsule network is not learning after its first
/// epoch, with the likely cause and the option that helps; empty when it
/// learns. `lengths` [B, K] are class-capsule lengths of a training batch
/// with one label per image; not learning: the training accuracy over
/// `examples` is no better than chance (1/K) by more than a point, or by
/// three standard errors of guessing, and the lengths are saturated (90%
/// above 0.9) or all near 0 (90% below 0.05).
std::string not_learning_warning(double train_accuracy, int64_t examples,
                                 const at::Tensor& lengths);

/// last.pt after every epoch and on interruption; best.pt when the accuracy
/// it is chosen on (EvalPolicy) improves. No `save` function: nothing is
/// written (ranks > 0).
struct CheckpointPolicy {
  std::string last_path; ///< where last.pt is written
  std::string best_path; ///< empty: no best checkpoint
  /// Writes a checkpoint of `state` to `path`; empty: nothing is written.
  std::function<void(const std::string& path, const TrainingState& state)> save;
};

/// One finished epoch.
struct EpochSummary {
  int64_t epoch = 0; ///< 1-based
  int64_t epochs = 0;        ///< epochs the run trains for in all
  double train_loss = 0;     ///< mean training loss over the epoch's images
  double train_accuracy = 0; ///< in [0, 1]
  double lr = 0; ///< at the next step
  double seconds = 0;           ///< seconds spent in the epoch's training steps
  double images_per_second = 0; ///< training images per second
  const EvalResult* eval = nullptr; ///< null when no evaluation ran
  const EvalResult* validation = nullptr; ///< the validation split's; null without one
  bool best = false; ///< best.pt was written with this epoch
  /// Other figures of the epoch (Replicas::take_epoch_stats: the all-reduce's).
  std::vector<std::pair<std::string, double>> extra;

  /// The row metrics.jsonl gets.
  EpochRecord record() const;
};

/// What the trainer reports as it goes; the base class is silent.
class TrainLogger {
 public:
  virtual ~TrainLogger() = default;
  /// A line for the user, such as a warning (no newline).
  virtual void message(const std::string& line) {}
  /// Ends a progress line left open (before an error is reported).
  virtual void end_progress() {}
  /// After every step: where the epoch stands and its running means.
  virtual void step(int64_t epoch, int64_t epochs, int64_t step, int64_t steps,
                    double images_per_second, double loss, double accuracy, double eta_seconds) {}
  /// After every epoch, with its figures.
  virtual void epoch(const EpochSummary& summary) {}
};

/// The command line's logger: a progress line and one line per epoch on
/// `out`, and one JSON object per epoch appended to `metrics_path` (when
/// not empty).
class RunLogger : public TrainLogger {
 public:
  /// `terminal`: `out` is a terminal, where the progress line is redrawn in place.
  RunLogger(std::ostream& out, bool terminal, std::string metrics_path);
  /// Ends the progress line, then writes `line` on `out`.
  void message(const std::string& line) override;
  void end_progress() override { progress_.finish(); }
  void step(int64_t epoch, int64_t epochs, int64_t step, int64_t steps, double images_per_second,
            double loss, double accuracy, double eta_seconds) override;
  /// Writes the epoch's line on `out` and appends its row to `metrics_path`.
  void epoch(const EpochSummary& summary) override;

 private:
  std::ostream& out_;
  ProgressPrinter progress_;
  std::string metrics_path_;
};

} // namespace capsnet
