#include "capsnet/engine/graph.h"

#include "capsnet/registry/task.h"

#include <stdexcept>
#include <utility>

namespace capsnet {

#ifndef CAPSNET_CUDA_GRAPHS
bool cuda_graphs_built() { return false; }

std::unique_ptr<StepGraph> make_cuda_graph(c10::Device) {
  throw TrainingError("this capsnet was built without CUDA graphs (build it with "
                      "-DCAPSNET_USE_CUDA=ON against a CUDA LibTorch; docs/gpu.md)");
}
#endif

bool use_cuda_graph(CudaGraphMode mode, c10::Device device, int64_t processes) {
  const bool possible = device.is_cuda() && processes == 1 && cuda_graphs_built();
  if (mode != CudaGraphMode::kOn || possible) return mode != CudaGraphMode::kOff && possible;
  if (!device.is_cuda()) {
    throw std::invalid_argument("--cuda-graph on needs a CUDA device (--device cuda); this run "
                                "is on " + device.str());
  }
  if (processes != 1) {
    throw std::invalid_argument("--cuda-graph on is for one process: data-parallel ranks (" +
                                std::to_string(processes) +
                                " here) agree after every forward pass, outside any graph; "
                                "use --cuda-graph auto or off");
  }
  throw std::invalid_argument("--cuda-graph on: this capsnet was built without CUDA graphs "
                              "(-DCAPSNET_USE_CUDA=ON against a CUDA LibTorch; docs/gpu.md)");
}

GraphedStep::GraphedStep(std::unique_ptr<StepGraph> graph, Adam& adam, std::function<void()> body,
                         int64_t warmup)
    : graph_(std::move(graph)), adam_(adam), body_(std::move(body)), warmup_(warmup) {}

void GraphedStep::run() {
  adam_.set_lr(); // outside the graph: the schedule's lr into Adam's device tensor
  if (captured_) {
    graph_->replay();
    return;
  }
  if (calls_++ < warmup_) {
    graph_->warm_up(body_);
    return;
  }
  // The captured backward allocates the gradients in the graph's memory and
  // every replay writes them there.
  for (auto& group : adam_.param_groups()) {
    for (auto& p : group.params()) p.mutable_grad() = at::Tensor();
  }
  graph_->capture(body_);
  captured_ = true;
  graph_->replay();
}

void zero_grads(const std::vector<at::Tensor>& params) {
  for (const auto& p : params) {
    if (p.grad().defined()) p.grad().zero_();
  }
}

} // namespace capsnet
