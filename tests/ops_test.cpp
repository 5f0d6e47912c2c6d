#include "capsnet/layers/digit_capsules.h"
#include "capsnet/ops/dynamic_routing.h"
#include "capsnet/ops/squash.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace capsnet {
namespace {

TEST(Squash, MatchesEquationOneOnAHandComputedVector) {
  // s = (3, 4): |s|^2 = 25, so v = 25/26 * (3, 4) / 5 = (15/26, 20/26).
  auto v = squash(at::tensor({3.0, 4.0}, at::kDouble), -1, 0.0);
  EXPECT_NEAR(v[0].item<double>(), 15.0 / 26.0, 1e-12);
  EXPECT_NEAR(v[1].item<double>(), 20.0 / 26.0, 1e-12);
}

TEST(Squash, ShortVectorsShrinkLongOnesApproachOneDirectionKept) {
  at::manual_seed(0);
  auto s = at::randn({64, 8}, at::kDouble) * at::logspace(-3, 3, 64, 10, at::kDouble).unsqueeze(1);
  auto v = squash(s, -1, /*eps=*/0.0);
  auto s_norm = s.norm(2, {-1});
  auto v_norm = v.norm(2, {-1});
  // |v| = |s|^2 / (1 + |s|^2) exactly (eps is negligible at these norms).
  EXPECT_TRUE(at::allclose(v_norm, s_norm.pow(2) / (1 + s_norm.pow(2)), 1e-9, 1e-12));
  auto cosine = (v * s).sum(-1) / (v_norm * s_norm);
  EXPECT_TRUE(at::allclose(cosine, at::ones_like(cosine), 1e-9, 1e-9));
  EXPECT_LT(v_norm.max().item<double>(), 1.0);
  // The default eps changes nothing visible once |s|^2 is well above it.
  auto big = s.narrow(0, 32, 32);
  EXPECT_TRUE(at::allclose(squash(big), squash(big, -1, 0.0), 1e-6, 0));
}

TEST(Squash, ZeroVectorHasFiniteGradient) {
  auto s = at::zeros({1, 4}, at::kDouble).requires_grad_(true);
  squash(s).sum().backward();
  EXPECT_TRUE(at::isfinite(s.grad()).all().item<bool>());
}

// A literal, loop-by-loop transcription of Procedure 1 in double precision.
std::vector<double> routing_by_the_book(const at::Tensor& u_hat_tensor, int iterations,
                                        RoutingSoftmax mode, const at::Tensor& bias_tensor) {
  auto u_hat = u_hat_tensor.contiguous();
  const int B = u_hat.size(0), I = u_hat.size(1), J = u_hat.size(2), D = u_hat.size(3);
  auto at4 = [&](int b, int i, int j, int d) { return u_hat[b][i][j][d].item<double>(); };
  std::vector<double> v(B * J * D, 0.0);
  for (int b = 0; b < B; ++b) {
    std::vector<double> logit(I * J, 0.0); // b_ij <- 0
    for (int r = 0; r < iterations; ++r) {
      std::vector<double> c(I * J);
      if (mode == RoutingSoftmax::kParents) {
        for (int i = 0; i < I; ++i) {
          double z = 0;
          for (int j = 0; j < J; ++j) z += std::exp(logit[i * J + j]);
          for (int j = 0; j < J; ++j) c[i * J + j] = std::exp(logit[i * J + j]) / z;
        }
      } else {
        for (int j = 0; j < J; ++j) {
          double z = 0;
          for (int i = 0; i < I; ++i) z += std::exp(logit[i * J + j]);
          for (int i = 0; i < I; ++i) c[i * J + j] = std::exp(logit[i * J + j]) / z;
        }
      }
      for (int j = 0; j < J; ++j) {
        std::vector<double> s(D, 0.0);
        for (int i = 0; i < I; ++i)
          for (int d = 0; d < D; ++d) s[d] += c[i * J + j] * at4(b, i, j, d);
        if (bias_tensor.defined())
          for (int d = 0; d < D; ++d) s[d] += bias_tensor[j][d].item<double>();
        double norm2 = 0;
        for (int d = 0; d < D; ++d) norm2 += s[d] * s[d];
        for (int d = 0; d < D; ++d)
          v[(b * J + j) * D + d] = norm2 / (1 + norm2) * s[d] / std::sqrt(norm2 + kSquashEps);
      }
      for (int i = 0; i < I; ++i)
        for (int j = 0; j < J; ++j)
          for (int d = 0; d < D; ++d) logit[i * J + j] += at4(b, i, j, d) * v[(b * J + j) * D + d];
    }
  }
  return v;
}

struct RoutingCase {
  int batch, in_caps, out_caps, dim, iterations;
  RoutingSoftmax mode;
  bool bias;
};

class RoutingMatchesProcedureOne : public ::testing::TestWithParam<RoutingCase> {};

TEST_P(RoutingMatchesProcedureOne, OnRandomInputs) {
  const auto p = GetParam();
  at::manual_seed(p.batch * 100 + p.iterations);
  auto u_hat = at::randn({p.batch, p.in_caps, p.out_caps, p.dim}, at::kDouble) * 0.7;
  at::Tensor bias = p.bias ? at::randn({p.out_caps, p.dim}, at::kDouble) * 0.3 : at::Tensor();
  auto v = dynamic_routing(u_hat, p.iterations, p.mode, bias).contiguous();
  auto expected = routing_by_the_book(u_hat, p.iterations, p.mode, bias);
  ASSERT_EQ(v.numel(), static_cast<int64_t>(expected.size()));
  auto flat = v.view({-1});
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_NEAR(flat[k].item<double>(), expected[k], 1e-12) << "element " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, RoutingMatchesProcedureOne,
    ::testing::Values(RoutingCase{1, 6, 3, 4, 1, RoutingSoftmax::kParents, false},
                      RoutingCase{3, 7, 4, 5, 3, RoutingSoftmax::kParents, false},
                      RoutingCase{2, 9, 2, 3, 5, RoutingSoftmax::kParents, true},
                      RoutingCase{3, 5, 4, 2, 3, RoutingSoftmax::kChildren, false},
                      RoutingCase{2, 8, 3, 4, 2, RoutingSoftmax::kChildren, true}),
    [](const ::testing::TestParamInfo<RoutingCase>& info) {
      const auto& p = info.param;
      return "B" + std::to_string(p.batch) + "_I" + std::to_string(p.in_caps) + "_J" +
             std::to_string(p.out_caps) + "_D" + std::to_string(p.dim) + "_r" +
             std::to_string(p.iterations) + "_" + enum_name(p.mode) + (p.bias ? "_bias" : "");
    });

TEST(PredictionVectors, EqualWTimesUForEveryPair) {
  at::manual_seed(3);
  auto u = at::randn({3, 5, 4}, at::kDouble);
  auto w = at::randn({5, 2, 4, 6}, at::kDouble);
  auto u_hat = prediction_vectors(u, w);
  ASSERT_EQ(u_hat.sizes(), (at::IntArrayRef{3, 5, 2, 6}));
  for (int b = 0; b < 3; ++b)
    for (int i = 0; i < 5; ++i)
      for (int j = 0; j < 2; ++j)
        for (int m = 0; m < 6; ++m) {
          double sum = 0;
          for (int n = 0; n < 4; ++n) sum += w[i][j][n][m].item<double>() * u[b][i][n].item<double>();
          EXPECT_NEAR(u_hat[b][i][j][m].item<double>(), sum, 1e-12);
        }
}

TEST(DynamicRouting, RejectsBadShapesAndIterations) {
  auto u_hat = at::zeros({2, 3, 4, 5});
  EXPECT_THROW(dynamic_routing(u_hat, 0), c10::Error);
  EXPECT_THROW(dynamic_routing(at::zeros({2, 3, 4}), 3), c10::Error);
  EXPECT_THROW(prediction_vectors(at::zeros({2, 3, 4}), at::zeros({3, 2, 5, 6})), c10::Error);
}

TEST(DynamicRouting, RoutingSoftmaxNamesRoundTrip) {
  EXPECT_EQ(parse_enum<RoutingSoftmax>(enum_name(RoutingSoftmax::kParents)), RoutingSoftmax::kParents);
  EXPECT_EQ(parse_enum<RoutingSoftmax>(enum_name(RoutingSoftmax::kChildren)), RoutingSoftmax::kChildren);
  EXPECT_THROW(parse_enum<RoutingSoftmax>("rows"), std::invalid_argument);
}

class RoutingGradient : public ::testing::TestWithParam<RoutingSoftmax> {};

TEST_P(RoutingGradient, MatchesFiniteDifferencesInDouble) {
  at::manual_seed(11);
  DigitCapsules layer(DigitCapsulesOptions(6, 3, 4, 5).routing_iterations(3).softmax(GetParam())
                          .bias(true).init_std(0.5));
  layer->to(at::kDouble);
  auto u = (at::randn({2, 6, 4}, at::kDouble) * 0.5).requires_grad_(true);
  auto weights = at::randn({2, 3, 5}, at::kDouble);
  auto loss = [&] { return (layer->forward(u) * weights).sum(); };
  const double error = testing::max_gradient_error(loss, {u, layer->weight, layer->bias}, 200);
  EXPECT_LT(error, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(BothSoftmaxes, RoutingGradient,
                         ::testing::Values(RoutingSoftmax::kParents, RoutingSoftmax::kChildren),
                         [](const ::testing::TestParamInfo<RoutingSoftmax>& info) {
                           return enum_name(info.param);
                         });

} // namespace
} // namespace capsnet
