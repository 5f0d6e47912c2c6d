#pragma once

#include "capsnet/data/batch.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/graph.h"
#include "capsnet/engine/policies.h"
#include "capsnet/engine/step.h"
#include "capsnet/registry/task.h"

#include <torch/optim/optimizer.h>

#include <atomic>
#include <chrono>

namespace capsnet {

/// How a call to Trainer::fit ended.
struct FitResult {
  bool interrupted = false; ///< stopped early; `state` is where to resume
  /// Stopped by `time_limit_seconds` (also `interrupted` when that came
  /// mid-epoch); `state` is where to resume.
  bool time_limit_reached = false;
  EvalResult last_eval;     ///< the last evaluation (empty if none ran)
};

/// What every rank agrees on after each forward pass, before backward: the
/// sums over the ranks (one process: its own values).
struct StepAgreement {
  bool stop = false;            ///< some rank stops here
  bool non_finite = false;      ///< some rank's loss is not finite
  bool non_finite_here = false; ///< this rank's is not
  double loss_sum = 0;          ///< the global batch's loss times its size
  int64_t correct = 0;          ///< the global batch's right predictions
  int64_t count = 0;            ///< the global batch's size
  /// This rank's values, summed over `replicas` (one all-reduce when several).
  static StepAgreement reached(Replicas& replicas, bool stopping, double loss, int64_t count,
                               int64_t correct);
};

/// The training loop, made of parts: a task (model + objective), a batch
/// source and its sampler, the optimizer, and the policies. For each step of
/// each epoch it sets the learning rate, draws the sampler's batch (with the
/// step's random stream), and runs the TrainStep; after each epoch it
/// evaluates, logs, and writes checkpoints.
///
/// Data-parallel: give every rank the same parts, a ShardedSampler of its
/// rank and `replicas`. Each rank draws the global batch (and its
/// augmentation) and trains on its slice; the ranks agree after each forward
/// pass on stopping and on a non-finite loss, average the gradients, and
/// evaluate their shares of the test set. Give ranks other than 0 an empty
/// CheckpointPolicy and no logger: the metrics they see are the global ones.
class Trainer {
 public:
  /// Trains `task` on `data` in the order of `sampler`; `replicas`: null for one process.
  Trainer(Task& task, const BatchSource& data, const EpochSampler& sampler,
          torch::optim::Optimizer& optimizer, Replicas* replicas = nullptr);

  LearningRateSchedule schedule; ///< the learning rate of every step
  EvalPolicy evaluation;         ///< what is evaluated after every epoch
  BatchNormPolicy batch_norm;    ///< precise batch norm after every epoch
  CheckpointPolicy checkpoints;  ///< where checkpoints are written
  /// After the first epoch, say on the logger when the network is not
  /// learning (not_learning_warning); for models whose scores are capsule lengths.
  bool warn_if_not_learning = false;
  TrainLogger* logger = nullptr; ///< null: silent
  /// Polled before every step: when it turns true, fit() writes last.pt and
  /// returns. Data-parallel: a stop on any rank stops every rank at the same step.
  const std::atomic<bool>* stop = nullptr;
  /// Stop as if interrupted after this many steps of one fit() call (0: no limit).
  int64_t max_steps = 0;
  /// Wall-clock budget of one fit() call in seconds (0: none). fit() starts
  /// no epoch that would end past it, judged by the longest epoch (training,
  /// evaluation and checkpoints) of this call, and returns at that epoch
  /// boundary with last.pt written. An epoch that overruns it anyway (the
  /// first, which has no estimate) stops mid-epoch, as an interruption does.
  /// Data-parallel: the ranks agree, so any rank's clock stops them all.
  double time_limit_seconds = 0;
  /// One process: how often the host reads the epoch's running loss and
  /// accuracy back from the device, for the progress line and the
  /// non-finite check. A step reads nothing; every this many steps (0: at
  /// each tenth of an epoch and at least once a second) and at the end of an
  /// epoch or a fit() call, one read. A non-finite loss is caught at that read
  /// and named with its step; last.pt is never written after it.
  /// Data-parallel ranks read and agree after every forward pass instead.
  int64_t report_every_steps = 0;
  /// One process (on a GPU: make_cuda_graph()): each full-size step is run
  /// through this graph, eager for 3 steps, then captured and replayed
  /// (GraphedStep); a batch of another size (an epoch's last, partial one)
  /// runs eagerly with the same arithmetic. Needs capsnet::Adam and no
  /// gradient hook (TrainingError otherwise). Null: every step eager.
  std::unique_ptr<StepGraph> graph;

  /// Between backward and the optimizer step (TrainStep::on_gradients).
  std::function<void()>& on_gradients() { return step_.on_gradients; }

  /// Trains from `state` (fresh or loaded from a checkpoint) until `epochs`
  /// epochs are complete or a stop is requested, updating `state`.
  /// Throws TrainingError for a non-finite loss, leaving the checkpoints as
  /// they were.
  FitResult fit(TrainingState& state, int64_t epochs);

 private:
  /// What one fit() call carries from step to step.
  struct FitCall {
    int64_t steps = 0;        ///< steps trained by this call
    bool saved = false;       ///< last.pt holds the state as it is
    double longest_epoch = 0; ///< of this call, from its first step to its checkpoints
  };
  /// One step of the epoch at state.step_in_epoch; false: stop here (nothing trained).
  bool train_step(TrainingState& state, int64_t epochs, FitCall& call);
  /// One process's step: forward, the sums on the device (tally_), update.
  void step_alone(const Batch& batch, TrainingState& state);
  /// The same through the graph: `batch` copied into static_batch_, then
  /// GraphedStep::run.
  void step_graphed(const Batch& batch, TrainingState& state);
  /// A graphed step without Adam: zero the gradients in place, forward,
  /// record, backward.
  TaskOutput graphed_body(const Batch& batch);
  /// tally_ from `state` (allocated on `device` the first time).
  void start_tally(const TrainingState& state, c10::Device device);
  /// A step's loss, right predictions and finiteness into tally_.
  void record(const TaskOutput& out, const Batch& batch);
  /// A rank's step: forward, agreement with the others, update; false: a rank stops.
  bool step_agreed(const Batch& batch, TrainingState& state, FitCall& call);
  /// Whether the step ending at `step` reads the sums back (report_every_steps).
  bool report_due(int64_t step, int64_t steps) const;
  /// Reads the sums into `state` and writes the progress line.
  void report(TrainingState& state, int64_t epochs, int64_t step);
  /// tally_ into `state`'s sums (nothing when there is none); throws
  /// AgreedTrainingError when a step's loss was not finite.
  void read_tally(TrainingState& state);
  /// Keeps the scores of the first epoch's last step (warn_if_not_learning).
  void keep_last_scores(const TrainingState& state, const TaskOutput& out, const Batch& batch);
  /// After the last step of an epoch: evaluation, the epoch's log line and
  /// metrics, checkpoints.
  void end_epoch(TrainingState& state, int64_t epochs, FitResult& result, FitCall& call);
  /// The test evaluation into result.last_eval; false when there is none.
  bool evaluate_epoch(const TrainingState& state, FitResult& result);
  /// evaluate() on `source`, failing on a non-finite loss (`what` names the split).
  EvalResult evaluate_finite(const BatchSource& source, const TrainingState& state,
                             const char* what);
  /// BatchNormPolicy: the running statistics from training examples.
  void settle_batch_norms(const TrainingState& state);
  /// Throws AgreedTrainingError: `what`, where the last good checkpoint is, and what to try.
  [[noreturn]] void fail_non_finite(const std::string& what);
  void save(const std::string& path, const TrainingState& state) const;
  bool stop_requested(int64_t steps_this_call) const;
  double seconds_in_fit() const;
  bool past_time_limit() const;
  /// At an epoch boundary: whether the next epoch, as long as the longest so
  /// far, would end past the time limit (agreed across ranks).
  bool next_epoch_overruns(double longest_epoch);

  std::chrono::steady_clock::time_point fit_start_;

  Task& task_;
  const BatchSource& data_;
  const EpochSampler& sampler_;
  Replicas single_;
  Replicas& replicas_;
  TrainStep step_;
  TrainLogger silent_;
  /// Seconds of this epoch the steps waited for their batches (the source's
  /// get(), and the hint for the next one): metrics.jsonl's "data_seconds".
  double data_seconds_ = 0;
  /// The scores of the epoch's last step (warn_if_not_learning).
  at::Tensor last_scores_;
  /// One process's running sums on the device, double [5]: the epoch's loss
  /// sum and right predictions (from the state's at the epoch's start or the
  /// last read), the step of the first non-finite loss (-1: none), that
  /// loss, and the next step's index in the epoch.
  at::Tensor tally_;
  bool tally_stale_ = true; ///< `state` holds the sums; tally_ starts from it at the next step
  std::unique_ptr<GraphedStep> graphed_; ///< from `graph`, at the first full-size step
  Adam* adam_ = nullptr;                 ///< the optimizer, when graphed
  std::vector<at::Tensor> graph_params_; ///< its parameters
  Batch static_batch_;                   ///< what the graph reads
  TaskOutput static_out_;                ///< what it wrote
  int64_t last_tenth_ = -1; ///< the tenth of the epoch of the last report
  std::chrono::steady_clock::time_point last_report_{}; ///< when it was

};

} // namespace capsnet
