#include "capsnet/ops/fused_routing.h"
#include "test_util.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

namespace capsnet {
namespace {

struct FusedCase {
  int64_t batch, n_in, n_out, d_in, d_out, iterations;
  RoutingSoftmax softmax;
  bool bias;
  int threads;
};

std::string name_of(const FusedCase& p) {
  return "B" + std::to_string(p.batch) + "_I" + std::to_string(p.n_in) + "_J" +
         std::to_string(p.n_out) + "_N" + std::to_string(p.d_in) + "_M" +
         std::to_string(p.d_out) + "_r" + std::to_string(p.iterations) + "_" +
         enum_name(p.softmax) + (p.bias ? "_bias" : "") + "_t" + std::to_string(p.threads);
}

class FusedRoutingMatchesReference : public ::testing::TestWithParam<FusedCase> {
 protected:
  void SetUp() override { saved_threads_ = at::get_num_threads(); }
  void TearDown() override { at::set_num_threads(saved_threads_); }

  // Forward and all gradients of both implementations on the same inputs.
  void compare(at::ScalarType dtype, double rtol, double atol) {
    const auto p = GetParam();
    at::set_num_threads(p.threads);
    at::manual_seed(p.batch * 31 + p.iterations);
    auto options = at::TensorOptions().dtype(dtype);
    auto u = (at::randn({p.batch, p.n_in, p.d_in}, options) * 0.4).requires_grad_(true);
    auto weight = (at::randn({p.n_in, p.n_out, p.d_in, p.d_out}, options) * 0.3).requires_grad_(true);
    auto bias = p.bias ? (at::randn({p.n_out, p.d_out}, options) * 0.2).requires_grad_(true)
                       : at::Tensor();
    auto upstream = at::randn({p.batch, p.n_out, p.d_out}, options);

    auto run = [&](bool fused) {
      for (auto* t : {&u, &weight, &bias}) {
        if (t->defined() && t->grad().defined()) t->mutable_grad().zero_();
      }
      auto v = fused ? fused_dynamic_routing(u, weight, bias, p.iterations, p.softmax)
                     : dynamic_routing(prediction_vectors(u, weight), p.iterations, p.softmax, bias);
      (v * upstream).sum().backward();
      std::vector<at::Tensor> out = {v.detach(), u.grad().clone(), weight.grad().clone()};
      if (bias.defined()) out.push_back(bias.grad().clone());
      return out;
    };
    auto expected = run(false);
    auto actual = run(true);
    const char* what[] = {"v", "grad u", "grad W", "grad bias"};
    for (size_t k = 0; k < expected.size(); ++k) {
      EXPECT_TRUE(at::allclose(actual[k], expected[k], rtol, atol))
          << what[k] << ": max difference "
          << (actual[k] - expected[k]).abs().max().item<double>();
    }
  }

 private:
  int saved_threads_ = 1;
};

TEST_P(FusedRoutingMatchesReference, InDouble) { compare(at::kDouble, 1e-10, 1e-12); }
TEST_P(FusedRoutingMatchesReference, InFloat) { compare(at::kFloat, 1e-4, 1e-5); }

INSTANTIATE_TEST_SUITE_P(
    Shapes, FusedRoutingMatchesReference,
    ::testing::Values(FusedCase{1, 7, 3, 4, 5, 1, RoutingSoftmax::kParents, false, 1},
                      FusedCase{3, 11, 4, 8, 16, 2, RoutingSoftmax::kParents, true, 2},
                      FusedCase{5, 32, 10, 8, 16, 3, RoutingSoftmax::kParents, false, 2},
                      FusedCase{7, 9, 5, 3, 7, 4, RoutingSoftmax::kParents, true, 1},
                      FusedCase{2, 13, 2, 6, 3, 5, RoutingSoftmax::kParents, false, 2},
                      FusedCase{3, 10, 4, 8, 16, 3, RoutingSoftmax::kChildren, false, 2},
                      FusedCase{5, 6, 3, 2, 5, 2, RoutingSoftmax::kChildren, true, 1},
                      FusedCase{9, 144, 10, 8, 16, 3, RoutingSoftmax::kParents, true, 2}),
    [](const ::testing::TestParamInfo<FusedCase>& info) { return name_of(info.param); });

TEST(FusedRouting, GradientMatchesFiniteDifferencesInDouble) {
  at::manual_seed(21);
  auto u = (at::randn({3, 6, 4}, at::kDouble) * 0.5).requires_grad_(true);
  auto weight = (at::randn({6, 3, 4, 5}, at::kDouble) * 0.5).requires_grad_(true);
  auto bias = (at::randn({3, 5}, at::kDouble) * 0.2).requires_grad_(true);
  auto upstream = at::randn({3, 3, 5}, at::kDouble);
  auto loss = [&] { return (fused_dynamic_routing(u, weight, bias, 3) * upstream).sum(); };
  EXPECT_LT(testing::max_gradient_error(loss, {u, weight, bias}, 400), 1e-6);
}

TEST(FusedRouting, RejectsWhatItCannotRun) {
  auto u = at::zeros({2, 3, 4});
  auto w = at::zeros({3, 2, 4, 5});
  EXPECT_THROW(fused_dynamic_routing(u, w, {}, 0), c10::Error);
  EXPECT_THROW(fused_dynamic_routing(u, at::zeros({3, 2, 5, 5}), {}, 3), c10::Error);
  EXPECT_THROW(fused_dynamic_routing(u.to(at::kInt), w.to(at::kInt), {}, 3), c10::Error);
  EXPECT_THROW(fused_dynamic_routing(u, w, at::zeros({2, 4}), 3), c10::Error);
  EXPECT_EQ(parse_enum<RoutingImpl>("fused"), RoutingImpl::kFused);
  EXPECT_THROW(parse_enum<RoutingImpl>("fast"), std::invalid_argument);
}

} // namespace
} // namespace capsnet
