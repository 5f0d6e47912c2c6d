#pragma once

// A training step captured once as a CUDA graph and replayed: forward,
// backward and capsnet::Adam's update in one launch, the step count and the
// learning rate read from device tensors (engine/adam.h). What changes from
// step to step is copied into the tensors the graph read when it was
// captured (its static inputs) before each replay.

#include "capsnet/engine/adam.h"
#include "capsnet/io/enum_names.h"

#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <vector>

namespace capsnet {

/// --cuda-graph: whether training steps are captured as a CUDA graph.
enum class CudaGraphMode {
  kAuto, ///< on for one process on a CUDA device, in a build with CUDA graphs
  kOn,   ///< on, or an error naming why it cannot be
  kOff,  ///< every step eager
};
CAPSNET_ENUM_NAMES(CudaGraphMode, "CUDA graph mode",
                   {{CudaGraphMode::kAuto, "auto"},
                    {CudaGraphMode::kOn, "on"},
                    {CudaGraphMode::kOff, "off"}})

/// Records a function's device work once and replays it. The CUDA one
/// (make_cuda_graph) records kernels; a test's may record the function itself.
class StepGraph {
 public:
  virtual ~StepGraph() = default;
  /// Runs `body` eagerly where its capture will run (CUDA: a side stream,
  /// so that lazy set-up and the allocator's first blocks stay out of the
  /// capture), then waits for it.
  virtual void warm_up(const std::function<void()>& body) = 0;
  /// Records `body` without running it (CUDA: its kernels, not their effect).
  virtual void capture(const std::function<void()>& body) = 0;
  /// Runs what capture() recorded.
  virtual void replay() = 0;
};

/// Whether this build captures CUDA graphs (-DCAPSNET_USE_CUDA=ON with
/// CAPSNET_CUDA_GRAPHS, on by default there).
bool cuda_graphs_built();

/// A CUDA graph on `device`. Throws TrainingError when the build has none.
std::unique_ptr<StepGraph> make_cuda_graph(c10::Device device);

/// Whether `mode` captures training steps on `device` for a run of
/// `processes` processes: kAuto resolves to on for one process on CUDA in a
/// build with graphs; kOn throws std::invalid_argument naming what is
/// missing (a CUDA device, one process, the build).
bool use_cuda_graph(CudaGraphMode mode, c10::Device device, int64_t processes);

/// One kind of training step on fixed-size inputs, eager for its first
/// `warmup` calls (on the graph's warm-up stream), captured on the next and
/// replayed from then on. `body` is the whole step on the static inputs: it
/// must zero the gradients it accumulates into (zero_grads()), run forward
/// and backward and Adam::update(), read nothing back to the host and
/// allocate nothing that outlives it except through the tensors it writes.
/// Before each call the caller copies the step's inputs into the static
/// ones; run() copies the learning rate into Adam's device tensor first.
class GraphedStep {
 public:
  /// `body` through `graph`, stepping `adam`, after `warmup` eager calls.
  GraphedStep(std::unique_ptr<StepGraph> graph, Adam& adam, std::function<void()> body,
              int64_t warmup = 3);
  /// One step: eager while warming up, then the capture and its first
  /// replay, then replays.
  void run();
  /// Whether the step has been captured.
  bool captured() const { return captured_; }

 private:
  std::unique_ptr<StepGraph> graph_;
  Adam& adam_;
  std::function<void()> body_;
  int64_t warmup_;
  int64_t calls_ = 0;
  bool captured_ = false;
};

/// Zeroes the gradients of `params` that exist, in place (a captured step's
/// gradients keep their memory); those that do not are left undefined.
void zero_grads(const std::vector<at::Tensor>& params);

} // namespace capsnet
