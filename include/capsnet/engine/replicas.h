#pragma once

// What the Trainer needs from the other processes of a data-parallel run,
// and nothing of how they talk: dist/process_group.h implements it on c10d
// (Gloo, NCCL). The base class is a single process, so that the loop is the
// same code with one process or many.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace capsnet {

/// The processes of a data-parallel run, as the Trainer sees them; this base is one process.
class Replicas {
 public:
  virtual ~Replicas() = default;

  /// This process's index, in [0, world_size()).
  virtual int64_t rank() const { return 0; }
  /// The number of processes.
  virtual int64_t world_size() const { return 1; }

  /// Sums `values` element-wise over all ranks, in place; every rank gets the
  /// totals. Blocking; every rank must call it at the same point.
  virtual void sum(std::vector<double>& values) {}

  /// Before backward: this rank holds `share` = (its images) / (the global
  /// batch's images) of the step. After backward, finish_gradients() leaves
  /// in every parameter's .grad the gradient of the global batch's mean loss:
  /// sum over ranks of share_r * grad_r.
  virtual void begin_gradients(double share) {}
  /// After backward: leaves the global batch's gradient in every .grad (see begin_gradients).
  virtual void finish_gradients() {}

  /// Makes every rank's trained parameters equal to rank 0's.
  virtual void broadcast_parameters() {}

  /// Figures about the communication since the last call (name, value), for
  /// the epoch's log line and metrics; resets them.
  virtual std::vector<std::pair<std::string, double>> take_epoch_stats() { return {}; }
};

} // namespace capsnet
