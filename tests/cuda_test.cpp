// Tests of the CUDA paths. Those named *_CUDA need a GPU and a CUDA build
// (-DCAPSNET_USE_CUDA=ON against a CUDA LibTorch) and are skipped otherwise.
#include "capsnet/data/batch.h"
#include "capsnet/engine/adam.h"
#include "capsnet/engine/evaluate.h"
#include "capsnet/engine/trainer.h"
#include "capsnet/registry/models.h"
#include "capsnet/registry/options.h"
#include "capsnet/runtime/runtime.h"
#include "capsnet/ops/dynamic_routing.h"
#include "capsnet/ops/fused_routing.h"
#include "test_util.h"

#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/optim/adam.h>

namespace capsnet {
namespace {

bool have_gpu() { return torch::cuda::is_available(); }

#define REQUIRE_CUDA_KERNELS()                                                       \
  if (!have_gpu() || !fused_routing_supports(c10::Device(c10::kCUDA, 0))) {         \
    GTEST_SKIP() << "needs a CUDA GPU and a CUDA build (-DCAPSNET_USE_CUDA=ON)";     \
  }

TEST(Device, ResolvesNamesAndRefusesMissingGpus) {
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  EXPECT_THROW(resolve_device("tpu"), std::invalid_argument);
  EXPECT_THROW(resolve_device("cuda:x"), std::invalid_argument);
  if (have_gpu()) {
    EXPECT_TRUE(resolve_device("auto").is_cuda());
    EXPECT_EQ(resolve_device("cuda").index(), 0);
  } else {
    EXPECT_TRUE(resolve_device("auto").is_cpu());
    try {
      resolve_device("cuda");
      ADD_FAILURE() << "expected an error without a GPU";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("--device cpu"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(fused_routing_supports(c10::Device(c10::kCUDA, 0)), built_with_cuda());
}

struct CudaCase {
  int64_t batch, n_in, n_out, d_in, d_out, iterations;
  RoutingSoftmax softmax;
  bool bias;
};

class FusedRoutingCuda : public ::testing::TestWithParam<CudaCase> {};

// The CUDA kernels against the ATen reference in double on the CPU.
TEST_P(FusedRoutingCuda, MatchesReference_CUDA) {
  REQUIRE_CUDA_KERNELS();
  const auto p = GetParam();
  at::manual_seed(p.batch + p.iterations);
  const auto cuda = at::TensorOptions().device(at::kCUDA);
  auto u = at::randn({p.batch, p.n_in, p.d_in}) * 0.4;
  auto weight = at::randn({p.n_in, p.n_out, p.d_in, p.d_out}) * 0.3;
  auto bias = p.bias ? at::randn({p.n_out, p.d_out}) * 0.2 : at::Tensor();
  auto upstream = at::randn({p.batch, p.n_out, p.d_out});

  auto u_ref = u.to(at::kDouble).requires_grad_(true);
  auto w_ref = weight.to(at::kDouble).requires_grad_(true);
  auto b_ref = p.bias ? bias.to(at::kDouble).requires_grad_(true) : at::Tensor();
  auto expected = dynamic_routing(prediction_vectors(u_ref, w_ref), p.iterations, p.softmax, b_ref);
  expected.backward(upstream.to(at::kDouble));

  auto u_gpu = u.to(cuda.device()).requires_grad_(true);
  auto w_gpu = weight.to(cuda.device()).requires_grad_(true);
  auto b_gpu = p.bias ? bias.to(cuda.device()).requires_grad_(true) : at::Tensor();
  auto got = fused_dynamic_routing(u_gpu, w_gpu, b_gpu, p.iterations, p.softmax);
  got.backward(upstream.to(cuda.device()));

  auto close = [](const at::Tensor& a, const at::Tensor& b) {
    return at::allclose(a.cpu().to(at::kDouble), b, 1e-3, 1e-5);
  };
  EXPECT_TRUE(close(got.detach(), expected.detach()));
  EXPECT_TRUE(close(u_gpu.grad(), u_ref.grad()));
  EXPECT_TRUE(close(w_gpu.grad(), w_ref.grad()));
  if (p.bias) {
    EXPECT_TRUE(close(b_gpu.grad(), b_ref.grad()));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FusedRoutingCuda,
    ::testing::Values(CudaCase{3, 1152, 10, 8, 16, 3, RoutingSoftmax::kParents, false},
                      CudaCase{5, 1152, 10, 8, 16, 3, RoutingSoftmax::kChildren, true},
                      CudaCase{1, 37, 3, 4, 5, 1, RoutingSoftmax::kParents, true},
                      CudaCase{7, 300, 7, 6, 9, 5, RoutingSoftmax::kChildren, false},
                      CudaCase{130, 64, 10, 8, 16, 2, RoutingSoftmax::kParents, false}),
    [](const auto& info) {
      const auto& p = info.param;
      return "B" + std::to_string(p.batch) + "_I" + std::to_string(p.n_in) + "_J" +
             std::to_string(p.n_out) + "_r" + std::to_string(p.iterations) + "_" +
             enum_name(p.softmax) + (p.bias ? "_bias" : "");
    });

// A whole model: forward, losses and one Adam step on the GPU agree with the CPU.
TEST(CapsNetCuda, TrainingStepMatchesCpu_CUDA) {
  REQUIRE_CUDA_KERNELS();
  at::manual_seed(21);
  CapsNet cpu_model(testing::tiny_config());
  CapsNet gpu_model(testing::tiny_config());
  torch::NoGradGuard copy_guard;
  for (auto& item : cpu_model->named_parameters()) {
    gpu_model->named_parameters()[item.key()].copy_(item.value());
  }
  gpu_model->to(at::kCUDA);
  auto images = at::rand({6, 1, 12, 12});
  auto labels = at::arange(6, at::kLong) % 10;
  TrainOptions options;
  options.model = testing::tiny_config();
  std::vector<double> losses;
  for (auto* model : {&cpu_model, &gpu_model}) {
    c10::AutoGradMode grad(true);
    const auto device = (*model)->parameters().front().device();
    torch::optim::Adam adam((*model)->parameters(), torch::optim::AdamOptions(1e-3));
    auto out = (*model)->forward(images.to(device), labels.to(device));
    auto loss = options.objective()(out.lengths, labels.to(device), out.reconstruction, images.to(device));
    adam.zero_grad();
    loss.total.backward();
    adam.step();
    losses.push_back(loss.total.item<double>());
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-4 * std::abs(losses[0]) + 1e-6);
  for (auto& item : cpu_model->named_parameters()) {
    EXPECT_TRUE(at::allclose(gpu_model->named_parameters()[item.key()].cpu(), item.value(), 1e-4,
                             1e-6))
        << item.key();
  }
}

// The paper's network: every parameter's gradient on the GPU against the
// CPU's, element by element and in magnitude (one Adam step cannot show a
// wrongly scaled gradient: its first update is lr * sign(g)). TF32 is off so
// that both sides compute in fp32.
class CapsNetGradientsCuda : public ::testing::TestWithParam<RoutingImpl> {};

TEST_P(CapsNetGradientsCuda, MatchTheCpu_CUDA) {
  REQUIRE_CUDA_KERNELS();
  struct KeepTf32 {
    bool was = at::globalContext().allowTF32CuDNN();
    ~KeepTf32() { at::globalContext().setAllowTF32CuDNN(was); }
  } keep;
  at::globalContext().setAllowTF32CuDNN(false);
  at::manual_seed(23);
  TrainOptions options; // the paper's network and losses
  CapsNet cpu_model(options.model);
  CapsNet gpu_model(options.model);
  {
    torch::NoGradGuard copy_guard;
    for (auto& item : cpu_model->named_parameters()) {
      gpu_model->named_parameters()[item.key()].copy_(item.value());
    }
  }
  gpu_model->to(at::kCUDA);
  for (auto* model : {&cpu_model, &gpu_model}) (*model)->set_routing_impl(GetParam());
  const auto images = at::rand({8, 1, 28, 28});
  const auto labels = at::arange(8, at::kLong) % 10;
  std::vector<double> losses;
  for (auto* model : {&cpu_model, &gpu_model}) {
    c10::AutoGradMode grad(true);
    const auto device = (*model)->parameters().front().device();
    auto out = (*model)->forward(images.to(device), labels.to(device));
    auto loss = options.objective()(out.lengths, labels.to(device), out.reconstruction,
                                    images.to(device));
    loss.total.backward();
    losses.push_back(loss.total.item<double>());
  }
  EXPECT_NEAR(losses[0], losses[1], 1e-4 * std::abs(losses[0]));
  for (auto& item : cpu_model->named_parameters()) {
    const auto expected = item.value().grad().to(at::kDouble);
    const auto got = gpu_model->named_parameters()[item.key()].grad().cpu().to(at::kDouble);
    const double scale = expected.abs().max().item<double>();
    ASSERT_GT(scale, 0) << item.key() << ": no gradient on the CPU";
    const double norm_ratio = got.norm().item<double>() / expected.norm().item<double>();
    EXPECT_NEAR(norm_ratio, 1.0, 1e-3) << item.key();
    EXPECT_LT((got - expected).abs().max().item<double>(), 2e-3 * scale) << item.key();
  }
}

INSTANTIATE_TEST_SUITE_P(Routing, CapsNetGradientsCuda,
                         ::testing::Values(RoutingImpl::kFused, RoutingImpl::kReference),
                         [](const auto& info) { return enum_name(info.param); });

TEST(CapsNetCuda, Bf16ModelAgreesWithFp32_CUDA) {
  if (!have_gpu()) {
    GTEST_SKIP() << "needs a CUDA GPU";
  }
  at::manual_seed(22);
  CapsNet model(testing::tiny_config());
  auto images = at::rand({4, 1, 12, 12});
  torch::NoGradGuard no_grad;
  const auto fp32 = model->capsules(images);
  model->to(at::kCUDA);
  model->set_precision(Precision::kBf16);
  const auto bf16 = model->capsules(images.to(at::kCUDA)).cpu();
  // The bound of Precision.Bf16ModelAgreesWithFp32Model (eight bf16 roundoffs).
  EXPECT_LT((fp32 - bf16).abs().max().item<double>(), 3.2e-2 * fp32.abs().max().item<double>());
}

// Graphed and eager training on the GPU: Efficient-CapsNet (batch norms, the
// attention routing) for 50 steps of batch 16 with the learning rate changing
// at every step, its last partial batch eager; and a graphed run stopped at
// step 17 and continued by a new Trainer (and graph). Eager GPU kernels may
// add in another order than the replayed ones (atomics in backward): within
// rounding, not bit for bit.
TEST(CudaGraph, GraphedTrainingMatchesEagerAndResumes_CUDA) {
  if (!have_gpu() || !cuda_graphs_built()) {
    GTEST_SKIP() << "needs a CUDA GPU and a build with CUDA graphs (-DCAPSNET_USE_CUDA=ON)";
  }
  const c10::Device gpu(c10::kCUDA, 0);
  const auto& info = model_info("efficient-capsnet");
  auto options = info.bench_options();
  const DataShape shape;
  Dataset data;
  torch::manual_seed(4);
  data.images = at::randint(0, 256, {200, 1, 28, 28}).to(at::kByte);
  data.labels = at::arange(200, at::kLong) % 10;
  data.num_classes = 10;
  const DatasetSource train(data, 2, false, gpu);
  const EpochSampler sampler(train.size(), 16, /*seed=*/2); // 13 steps, the last of 8 images
  auto run = [&](bool graphed, std::vector<int64_t> stops) {
    torch::manual_seed(6);
    const auto network = info.build(shape, options);
    network->to(gpu);
    auto task = info.task(network, options);
    Adam adam(network->parameters(), torch::optim::AdamOptions(5e-4));
    TrainingState state;
    for (auto max_steps : stops) {
      Trainer trainer(*task, train, sampler, adam);
      trainer.schedule = {5e-4, 0.5};
      trainer.max_steps = max_steps;
      if (graphed) trainer.graph = make_cuda_graph(gpu);
      trainer.fit(state, 4); // 52 steps
    }
    std::vector<at::Tensor> weights;
    for (const auto& p : network->parameters()) weights.push_back(p.detach().cpu());
    return weights;
  };
  const auto eager = run(false, {0});
  const auto graphed = run(true, {0});
  const auto resumed = run(true, {17, 0});
  for (size_t k = 0; k < eager.size(); ++k) {
    EXPECT_TRUE(at::allclose(graphed[k], eager[k], 1e-4, 1e-5)) << "parameter " << k;
    EXPECT_TRUE(at::allclose(resumed[k], graphed[k], 1e-4, 1e-5)) << "parameter " << k;
  }
}

} // namespace
} // namespace capsnet
