#pragma once

// A CapsNet training run in a directory, as `capsnet train` runs it: the
// Trainer assembled from TrainOptions, with config.json, metrics.jsonl,
// last.pt and best.pt in the run directory, and exact resumption.

#include "capsnet/engine/graph.h"
#include "capsnet/dist/process_group.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/registry/options.h"
#include "capsnet/engine/step.h"

#include <atomic>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace capsnet {

/// How one call of train() runs, beyond the options: resume, stop, log, data-parallel.
struct TrainControl {
  /// Continue the run in run_dir from its last.pt instead of starting afresh.
  bool resume = false;
  /// Polled before every step: when it turns true, the trainer writes last.pt
  /// and returns with `interrupted` set (SIGINT/SIGTERM in the CLI).
  const std::atomic<bool>* stop = nullptr;
  /// Stop as if interrupted after this many steps of this call (0: no limit).
  int64_t max_steps = 0;
  /// Wall-clock budget of this call in seconds (0: none): training stops at
  /// the last epoch boundary that fits it (Trainer::time_limit_seconds).
  double time_limit_seconds = 0;
  std::ostream* log = nullptr; ///< progress and epoch lines; null: silent
  bool terminal = false;       ///< rewrite the progress line in place
  /// Start in a directory that holds other files, or resume on other data
  /// than the checkpoint records.
  bool force = false;
  /// A new run may start in a directory that holds only what a run that
  /// died before its first checkpoint left (config.json, metrics.jsonl, the
  /// lock, a temporary file): train --resume-if-exists after a restart.
  bool replace_unfinished = false;
  /// Data-parallel training (resolved: dist::resolve). world_size 1: one
  /// process. Every rank calls train() with the same options and run_dir;
  /// options.batch_size is the global batch, split over the ranks.
  dist::DistOptions distributed;
  /// Whether steps are captured as a CUDA graph (use_cuda_graph); kOn where
  /// one cannot be is refused before anything is written.
  CudaGraphMode cuda_graph = CudaGraphMode::kAuto;
};

/// How a call of train() ended, the state it reached and its last checkpoint.
struct TrainReport {
  bool interrupted = false; ///< stopped by control.stop or control.max_steps
  bool time_limit_reached = false; ///< stopped by control.time_limit_seconds
  TrainingState state; ///< where the run stands at the return
  EvalResult last_eval; ///< the last epoch's test evaluation (empty if none ran)
  std::string last_checkpoint; ///< the path of run_dir's last.pt
};

/// The run policy: what may change when a run resumes. The options named
/// here are taken from `asked`; every other option stays the run's (its
/// config.json), since it decides the weights or the data they saw.
TrainOptions resumed_options(const TrainOptions& run, const TrainOptions& asked);
/// The command-line names of the options resumed_options takes from `asked`
/// ("--epochs", ...), for checks and help texts.
const std::vector<std::string>& resume_may_change();
/// "--epochs, --threads, ... and --loader-threads": resume_may_change() as text.
std::string resume_may_change_text();

/// One option given for a run (a command-line flag): its name, as
/// resume_may_change() spells them, and what it sets.
struct GivenOption {
  std::string name;                         ///< the flag, "--epochs", ...
  std::function<void(TrainOptions&)> apply; ///< sets the option's value
};

/// What a run was asked to do: start from a preset with options given,
/// resume, or resume when its directory has a checkpoint.
struct RunRequest {
  std::string preset = "paper";   ///< what a new run starts from
  std::vector<GivenOption> given; ///< in the order they apply
  std::string out;                ///< the run directory; empty: runs/DATASET-PRESET-TIMESTAMP
  std::string resume;             ///< continue the run in this directory
  /// Resume the run in `out` when it has last.pt, else start it there; the
  /// options given must then be the run's, but for those that may change.
  bool resume_if_exists = false;
  /// Processes of a data-parallel run: a given --batch-size is per process.
  int64_t world_size = 1;
};

/// The run resolve_run settled on: its options, its directory and whether it resumes.
struct ResolvedRun {
  TrainOptions options; ///< as train() takes them
  std::string run_dir;  ///< the run directory
  bool resuming = false; ///< continues the run in run_dir from its last.pt
};

/// The run `request` describes: a resumed run's options are its checkpoint's
/// with those that may change (resumed_options) taken from `given`; a new
/// run's, the preset's with `given` applied and the batch made global.
/// Throws std::invalid_argument naming an option that may not change (or that
/// differs from the run's, with resume_if_exists), and CheckpointError for an
/// unreadable last.pt.
ResolvedRun resolve_run(const RunRequest& request);

/// best.pt's epoch and accuracies, saying what it was chosen on (the
/// validation split, or the test set, which makes its accuracy optimistic).
std::string best_text(const TrainingState& state, const TrainOptions& options);

/// What a run that train() returned from says to its user (rank 0): done,
/// stopped by its time limit, or interrupted, with its checkpoints, its
/// best.pt and how to continue; `error`: an interruption, for stderr.
struct RunOutcome {
  std::string text; ///< one or more lines, each ending in a newline
  bool error = false; ///< an interruption: the text goes to stderr
};
/// What `report` says to the user of the run in `run_dir` trained with `options`.
RunOutcome run_outcome(const TrainReport& report, const TrainOptions& options,
                       const std::string& run_dir, double time_limit_seconds);

/// Paths inside a run directory: run_dir/last.pt.
std::string last_checkpoint_path(const std::string& run_dir);
/// run_dir/best.pt.
std::string best_checkpoint_path(const std::string& run_dir);

/// Trains a CapsNet with `options`, writing config.json, metrics.jsonl (one
/// JSON object per epoch), last.pt (every epoch and on interruption) and
/// best.pt (best test accuracy) into run_dir. All randomness after the weight
/// initialisation (order, shifts) derives from (seed, epoch, step), so a resumed
/// run ends with the same weights as an uninterrupted one at the same thread
/// count. The caller sets the thread count (set_thread_count(options.threads)).
/// On resume, `options` must be the checkpoint's (epochs and threads may differ).
/// A lock (run_dir/.lock, flock) keeps a second trainer out of the directory;
/// a fresh run needs an empty or new directory, unless control.force.
/// Data-parallel: rank 0 alone checks and writes run_dir (config, metrics,
/// checkpoints, lock) and logs; on resume every rank reads run_dir/last.pt,
/// so run_dir must be on storage every machine sees. The checkpoint resumes
/// at any world size: the global batch is the run's. A rank that fails tells
/// the others why; their DistributedError names it.
/// Throws DataError, CheckpointError, TrainingError (DistributedError).
TrainReport train(const TrainOptions& options, const std::string& run_dir,
                  const TrainControl& control = {});

} // namespace capsnet
