#pragma once

// A CapsNet training run in a directory, as `capsnet train` runs it: the
// Trainer assembled from TrainOptions, with config.json, metrics.jsonl,
// last.pt and best.pt in the run directory, and exact resumption.

#include "capsnet/dist/process_group.h"
#include "capsnet/engine/checkpoint.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/options.h"
#include "capsnet/engine/step.h"

#include <atomic>
#include <ostream>
#include <string>

namespace capsnet {

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
};

struct TrainReport {
  bool interrupted = false;
  bool time_limit_reached = false; ///< stopped by control.time_limit_seconds
  TrainingState state;
  EvalResult last_eval; ///< the last epoch's test evaluation (empty if none ran)
  std::string last_checkpoint;
};

/// Paths inside a run directory.
std::string last_checkpoint_path(const std::string& run_dir);
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
