#pragma once

// Data-parallel training on PyTorch's c10d: torchrun's contract (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), rendezvous through a
// c10d TCPStore, Gloo on the CPU and NCCL on CUDA builds, gradients averaged
// by a bucketed all-reduce that starts during backward.
//
// Why our own buckets and not c10d's Reducer (DistributedDataParallel's
// engine, which Debian's libtorch 1.13 exports too): the Reducer averages
// gradients with equal weights, each rank's divided by the world size, while
// a global batch that does not split evenly (7 images on 3 ranks, the short
// last batch of an epoch, a rank with none) needs each rank's gradient
// weighted by its share of the batch for N ranks to train exactly as one
// process at the global batch, which the equivalence tests check (to 1e-5
// after 3 epochs). The Reducer's comm hooks could reweight, but the hook
// API differs between 1.13 and 2.x, and the Reducer keeps its own autograd
// hooks and bucket views that the Trainer's gradient hook (TrainStep's
// on_gradients) and the per-epoch overlap figures (CommStats) would have to
// be rebuilt around. Our buckets: share-weighted copies of the gradients into
// flat buckets, one all-reduce per bucket as soon as it is full.

#include "capsnet/engine/replicas.h"
#include "capsnet/engine/step.h"
#include "capsnet/io/enum_names.h"
#include "capsnet/layers/batch_norm.h"

#include <ATen/ATen.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace capsnet::dist {
/// Which c10d backend a process group uses; auto: NCCL on a CUDA device, Gloo on the CPU.
enum class Backend { kAuto, kGloo, kNccl };
} // namespace capsnet::dist

namespace capsnet {
CAPSNET_ENUM_NAMES(dist::Backend, "distributed backend",
                   {{dist::Backend::kAuto, "auto"},
                    {dist::Backend::kGloo, "gloo"},
                    {dist::Backend::kNccl, "nccl"}})
} // namespace capsnet

namespace capsnet::dist {

/// Where this process stands in a data-parallel job. Fields left at -1 or
/// empty are taken from torchrun's environment variables by resolve().
struct DistOptions {
  int64_t rank = -1;             ///< RANK; 0 when unset
  int64_t world_size = -1;       ///< WORLD_SIZE; 1 when unset
  int64_t local_rank = -1;       ///< LOCAL_RANK: the GPU of this process; `rank` when unset
  int64_t local_world_size = -1; ///< LOCAL_WORLD_SIZE: processes on this machine
  std::string master_addr;       ///< MASTER_ADDR; 127.0.0.1 when unset
  int64_t master_port = -1;      ///< MASTER_PORT; 29500 when unset
  Backend backend = Backend::kAuto; ///< auto: NCCL on a CUDA device, Gloo on the CPU
  double timeout_seconds = 60;   ///< a collective or the rendezvous waiting longer fails
  /// Gradient bucket size: each bucket's all-reduce starts as soon as the
  /// gradients in it are ready.
  double bucket_megabytes = 8;
  /// Start the all-reduces during backward (false: all after it, to measure
  /// what the overlap gains).
  bool overlap = true;
  /// torchrun's agent hosts the store (TORCHELASTIC_USE_AGENT_STORE); keys
  /// then go under `/worker/attempt_<TORCHELASTIC_RESTART_COUNT>`.
  bool agent_store = false;
  int64_t restart_count = 0; ///< TORCHELASTIC_RESTART_COUNT: the group's restarts so far

  /// Whether there is more than one process.
  bool distributed() const { return world_size > 1; }
};

/// Whether this build has `backend`: Gloo where gloo's headers were found,
/// NCCL in CUDA builds that found nccl.h (CMakeLists.txt); auto always.
bool backend_available(Backend backend);

/// `given` completed from the environment (read with `getenv`): a field given
/// explicitly wins over its variable. Throws std::invalid_argument naming the
/// flag or variable that is malformed or out of range.
DistOptions resolve(DistOptions given,
                    const std::function<const char*(const char*)>& getenv = nullptr);

/// Another rank failed, stalled or disagrees; the message names the rank.
class DistributedError : public TrainingError {
 public:
  using TrainingError::TrainingError;
};

/// Per-epoch figures of the gradient all-reduce.
struct CommStats {
  int64_t steps = 0;          ///< steps whose gradients were reduced
  double exposed_seconds = 0; ///< backward's end to the last bucket reduced, summed over steps
  double alone_seconds = 0;   ///< one all-reduce of every bucket with nothing else running
  int64_t buckets = 0;        ///< gradient buckets, one all-reduce each per step
  double megabytes = 0; ///< gradient bytes reduced per step
};

/// A c10d process group as the Trainer's Replicas.
class ProcessGroup : public Replicas {
 public:
  /// Joins the job: rendezvous at master_addr:master_port (rank 0 hosts the
  /// TCPStore, unless torchrun's agent does), then a Gloo or NCCL group on
  /// `device`. Throws DistributedError when the other ranks do not come
  /// within the timeout, std::invalid_argument for a backend this build or
  /// device lacks.
  ProcessGroup(const DistOptions& options, c10::Device device);
  ~ProcessGroup() override;
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  /// This process's rank in [0, world_size()).
  int64_t rank() const override;
  /// The number of processes in the job.
  int64_t world_size() const override;
  /// The backend in use: Gloo or NCCL, never auto.
  Backend backend() const;

  /// Sums `values` element-wise over all ranks, in place (blocking).
  void sum(std::vector<double>& values) override;
  /// The element-wise sum of `tensor` over all ranks (blocking; every rank calls it).
  at::Tensor sum_tensor(const at::Tensor& tensor);
  /// sum_tensor as an autograd op, for batch statistics over the global
  /// batch (layers/batch_norm.h). The group must outlive its uses.
  DifferentiableSum differentiable_sum();

  /// The parameters whose gradients begin/finish_gradients average: hooks
  /// are registered on them, and buckets laid out in reverse order (the
  /// order backward produces them). Call once, before training.
  void attach(const std::vector<at::Tensor>& parameters);
  /// Arms the gradient hooks for a step in which this rank holds `share` of the global batch.
  void begin_gradients(double share) override;
  /// Waits for every bucket's all-reduce and leaves the global batch's gradient in .grad.
  void finish_gradients() override;
  /// Copies rank 0's attached parameters to every rank.
  void broadcast_parameters() override;

  /// Each rank's `digest` (e.g. a CRC of its options and data) must equal
  /// rank 0's; throws DistributedError naming the ranks that differ and `what`.
  void check_same(uint32_t digest, const std::string& what);

  /// Best effort: tells the other ranks why this one stops, so that their
  /// errors name it and the reason.
  void report_failure(const std::string& reason) noexcept;

  /// The all-reduce figures since the last call, and resets them.
  CommStats take_stats();
  /// take_stats() as allreduce_exposed_seconds (per step), allreduce_alone_seconds,
  /// allreduce_hidden_fraction (1 - exposed / alone, at least 0) and gradient_megabytes.
  std::vector<std::pair<std::string, double>> take_epoch_stats() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

} // namespace capsnet::dist
