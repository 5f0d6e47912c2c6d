// The CUDA StepGraph: compiled only with -DCAPSNET_USE_CUDA=ON and
// CAPSNET_CUDA_GRAPHS (CMakeLists.txt), against a CUDA LibTorch.
#include "capsnet/engine/graph.h"

#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace capsnet {

namespace {

// Capture runs on a side stream (a graph cannot be captured on the default
// stream), ordered after the work queued on the current one, which then
// waits for it.
class CudaStepGraph : public StepGraph {
 public:
  explicit CudaStepGraph(c10::Device device)
      : device_(device),
        side_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())) {}

  void warm_up(const std::function<void()>& body) override {
    on_side([&] { body(); });
  }

  void capture(const std::function<void()>& body) override {
    on_side([&] {
      graph_.capture_begin();
      body();
      graph_.capture_end();
    });
  }

  void replay() override {
    c10::cuda::CUDAGuard guard(device_);
    graph_.replay();
  }

 private:
  template <typename F>
  void on_side(F&& work) {
    c10::cuda::CUDAGuard guard(device_);
    const auto main = c10::cuda::getCurrentCUDAStream(device_.index());
    at::cuda::CUDAEvent queued;
    queued.record(main);
    queued.block(side_);
    {
      c10::cuda::CUDAStreamGuard on_side(side_);
      work();
    }
    at::cuda::CUDAEvent done;
    done.record(side_);
    done.block(main);
  }

  c10::Device device_;
  c10::cuda::CUDAStream side_;
  at::cuda::CUDAGraph graph_;
};

} // namespace

bool cuda_graphs_built() { return true; }

std::unique_ptr<StepGraph> make_cuda_graph(c10::Device device) {
  if (!device.has_index()) device = c10::Device(c10::kCUDA, 0);
  return std::make_unique<CudaStepGraph>(device);
}

} // namespace capsnet
