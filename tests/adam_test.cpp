// capsnet::Adam (the capturable one) against torch::optim::Adam: the same
// weights within fp32 rounding over 200 steps with a learning rate that
// decays every step and a save/load halfway, and each reads the other's state.
#include "capsnet/engine/adam.h"
#include "capsnet/engine/policies.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/optim/adam.h>
#include <torch/serialize.h>

#include <algorithm>
#include <limits>
#include <sstream>
#include <vector>

namespace capsnet {
namespace {

// Parameters of a few shapes (one not a multiple of any vector width), the
// same initial values for each optimizer.
std::vector<at::Tensor> parameters(int seed, at::ScalarType type = at::kFloat) {
  at::manual_seed(seed);
  std::vector<at::Tensor> out;
  for (auto sizes : std::vector<std::vector<int64_t>>{{37}, {16, 9}, {3, 5, 7, 11}}) {
    out.push_back(at::randn(sizes, at::TensorOptions().dtype(type)).requires_grad_());
  }
  return out;
}

std::vector<at::Tensor> copies(const std::vector<at::Tensor>& params) {
  std::vector<at::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().clone().requires_grad_());
  return out;
}

// Step t's gradients: a function of the weights (so that differences would
// feed back) plus noise of its own, the same for both optimizers.
void set_gradients(const std::vector<at::Tensor>& params, int64_t t) {
  at::manual_seed(1000 + t);
  for (const auto& p : params) {
    auto g = (p.detach() * 0.3 + at::randn(p.sizes(), p.options()) * (t % 7 == 0 ? 10.0 : 0.5));
    if (p.grad().defined()) p.mutable_grad().copy_(g); else p.mutable_grad() = g;
  }
}

double largest_difference(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double worst = 0;
  for (size_t k = 0; k < a.size(); ++k) {
    worst = std::max(worst, (a[k] - b[k]).abs().max().item<double>());
  }
  return worst;
}

std::string saved(const torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream bytes;
  archive.save_to(bytes);
  return bytes.str();
}

void restore(torch::optim::Optimizer& optimizer, const std::string& bytes) {
  torch::serialize::InputArchive archive;
  std::istringstream in(bytes);
  archive.load_from(in);
  optimizer.load(archive);
}

// 200 steps of both from the same weights and gradients; returns the largest
// difference between their weights, and how far the weights moved.
std::pair<double, double> follow_torch_adam(at::ScalarType type) {
  const auto init = parameters(7, type);
  auto theirs_params = copies(init), ours_params = copies(init);
  torch::optim::Adam theirs(theirs_params, torch::optim::AdamOptions(1e-2));
  auto ours = std::make_unique<Adam>(ours_params, torch::optim::AdamOptions(1e-2));
  const LearningRateSchedule schedule{1e-2, 0.5, 1e-4};
  for (int64_t t = 0; t < 200; ++t) {
    const double lr = schedule.at(t, 40); // halves every 40 steps, floored
    LearningRateSchedule::apply(theirs, lr);
    LearningRateSchedule::apply(*ours, lr);
    set_gradients(theirs_params, t);
    set_gradients(ours_params, t);
    theirs.step();
    ours->step();
    if (t == 99) { // a resume: a new optimizer over the same weights, from the saved state
      const auto state = saved(*ours);
      ours = std::make_unique<Adam>(ours_params, torch::optim::AdamOptions(1e-2));
      restore(*ours, state);
      EXPECT_EQ(ours->steps_taken(), 100);
    }
  }
  return {largest_difference(theirs_params, ours_params), largest_difference(theirs_params, init)};
}

// fp32 takes the fused CPU loop. Each step moves a weight by about lr (1e-2
// at most), and a float's rounding is 6e-8 of its value (the weights are
// about 1): 200 steps' worth of that is what may differ.
TEST(CapturableAdam, FollowsTorchAdamOver200StepsWithDecayAndAResume) {
  const auto [difference, moved] = follow_torch_adam(at::kFloat);
  EXPECT_GT(moved, 0.1) << "the weights barely moved: nothing was tested";
  EXPECT_LT(difference, 2e-6) << "capsnet::Adam left torch::optim::Adam (weights moved by up to "
                              << moved << ")";
}

// fp64 takes the tensor-math path, the one CUDA takes: rounding of doubles.
TEST(CapturableAdam, ItsTensorPathFollowsTorchAdamToo) {
  const auto [difference, moved] = follow_torch_adam(at::kDouble);
  EXPECT_GT(moved, 0.1);
  EXPECT_LT(difference, 1e-12) << "weights moved by up to " << moved;
}

TEST(CapturableAdam, ReadsAndWritesTorchAdamsState) {
  const auto init = parameters(3);
  auto a = copies(init), b = copies(init), c = copies(init);
  torch::optim::Adam theirs(a, torch::optim::AdamOptions(1e-3));
  Adam ours(b, torch::optim::AdamOptions(1e-3));
  for (int64_t t = 0; t < 5; ++t) {
    set_gradients(a, t);
    set_gradients(b, t);
    theirs.step();
    ours.step();
  }
  // torch's state into ours, ours into torch's: one more step agrees with both.
  Adam from_theirs(copies(a), torch::optim::AdamOptions(1e-3));
  restore(from_theirs, saved(theirs));
  EXPECT_EQ(from_theirs.steps_taken(), 5);
  auto d = copies(b);
  torch::optim::Adam from_ours(d, torch::optim::AdamOptions(1e-3));
  restore(from_ours, saved(ours));
  auto e = from_theirs.param_groups().front().params();
  for (auto* params : {&a, &b, &d, &e}) set_gradients(*params, 5);
  const std::vector<torch::optim::Optimizer*> all{&theirs, &ours, &from_ours, &from_theirs};
  for (auto* o : all) o->step();
  EXPECT_LT(largest_difference(a, e), 1e-6);
  EXPECT_LT(largest_difference(b, d), 1e-6);
  EXPECT_LT(largest_difference(a, b), 1e-6);
  // A state of no steps (saved before the first) loads as zero steps.
  Adam fresh(c, torch::optim::AdamOptions(1e-3));
  Adam again(copies(c), torch::optim::AdamOptions(1e-3));
  restore(again, saved(fresh));
  EXPECT_EQ(again.steps_taken(), 0);
}

// A weight whose gradient is tiny, then zero (a dead unit's), has moments in
// the subnormal range, where x86 computes many times slower: the fused loop
// flushes them to zero, and the weights stay torch::optim::Adam's. The
// weights are tiny too (1e-12), so that each optimizer's steps show in them;
// 40,000 of them on 2 threads, so that the worker thread flushes as well.
TEST(CapturableAdam, SubnormalMomentsAreFlushedWithoutMovingTheWeights) {
#if !defined(__SSE__)
  GTEST_SKIP() << "the flush is x86's (MXCSR)";
#endif
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  const int64_t n = 40000; // over 2 of the loop's 16,384-element grains
  at::manual_seed(5);
  const auto init = at::randn({n}) * 1e-12;
  std::vector<at::Tensor> a{init.clone().requires_grad_()}, b{init.clone().requires_grad_()};
  torch::optim::Adam theirs(a, torch::optim::AdamOptions(1e-3));
  Adam ours(b, torch::optim::AdamOptions(1e-3));
  for (int64_t t = 0; t < 400; ++t) {
    // Step 0: 1e-20 (v = 1e-3 * 1e-40 is subnormal at once); then zero, so
    // that m decays from 1e-21 into the subnormal range too (after ~370 steps).
    for (auto* params : {&a, &b}) {
      (*params)[0].mutable_grad() = at::full({n}, t == 0 ? 1e-20 : 0.0);
    }
    theirs.step();
    ours.step();
  }
  EXPECT_GT((a[0] - init).abs().max().item<double>(), 1e-15) << "the weights did not move";
  // The fused loop rounds like torch's within an ulp or two of the largest
  // weights (the order of a product and a quotient differs): a couple of
  // hundred of these weights differ by 1.7e-21, with or without the flush.
  // The steps themselves are about 1e-15.
  const double moved = (a[0] - b[0]).abs().max().item<double>();
  EXPECT_LT(moved, 1e-18) << "the flush moved a weight by " << moved;
  // The moments, read through torch::optim::Adam's state format.
  auto c = std::vector<at::Tensor>{init.clone().requires_grad_()};
  torch::optim::Adam mine(c, torch::optim::AdamOptions(1e-3));
  restore(mine, saved(ours));
  const auto moments = [](torch::optim::Adam& adam) {
    auto& state = static_cast<torch::optim::AdamParamState&>(*adam.state().begin()->second);
    return std::make_pair(state.exp_avg(), state.exp_avg_sq());
  };
  const auto subnormal = [](const at::Tensor& x) {
    return ((x != 0) & (x.abs() < std::numeric_limits<float>::min())).sum().item<int64_t>();
  };
  const auto [their_m, their_v] = moments(theirs);
  const auto [our_m, our_v] = moments(mine);
  EXPECT_EQ(subnormal(their_v), n) << "the test made no subnormal moments";
  EXPECT_EQ(subnormal(their_m), n);
  EXPECT_EQ(subnormal(our_m) + subnormal(our_v), 0);
  EXPECT_TRUE(our_v.eq(0).all().item<bool>());
  // Every thread is back to IEEE arithmetic: halving the smallest normal
  // float gives a subnormal, not zero, in each chunk of a parallel loop.
  std::vector<float> halves(static_cast<size_t>(n));
  volatile float smallest = std::numeric_limits<float>::min();
  at::parallel_for(0, n, 16384, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) halves[size_t(i)] = smallest * 0.5f;
  });
  EXPECT_EQ(std::count(halves.begin(), halves.end(), 0.0f), 0)
      << "a thread was left flushing subnormals";
  at::set_num_threads(threads);
}

TEST(CapturableAdam, RefusesWhatItDoesNotDo) {
  EXPECT_THROW(Adam(parameters(1), torch::optim::AdamOptions(1e-3).amsgrad(true)), c10::Error);
  EXPECT_THROW(Adam(parameters(1), torch::optim::AdamOptions(1e-3).weight_decay(0.1)), c10::Error);
  Adam adam(parameters(1));
  EXPECT_THROW(adam.step([] { return at::Tensor(); }), c10::Error);
}

} // namespace
} // namespace capsnet
