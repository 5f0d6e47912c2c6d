#include "capsnet/losses/capsule_losses.h"
#include "test_util.h"

#include <gtest/gtest.h>

namespace capsnet {
namespace {

at::Tensor lengths() {
  return at::tensor({0.95, 0.30, 0.05, 0.20, 0.80, 0.10}, at::kDouble).view({2, 3});
}
at::Tensor labels() { return at::tensor({0, 2}, at::kLong); }

TEST(MarginLoss, SquaredMatchesHandComputedValue) {
  // Image 0 (class 0): 0.5 * (0.3 - 0.1)^2 = 0.02.
  // Image 1 (class 2): (0.9 - 0.1)^2 + 0.5 * (0.2 - 0.1)^2 + 0.5 * (0.8 - 0.1)^2 = 0.89.
  EXPECT_NEAR(margin_loss(lengths(), labels()).item<double>(), (0.02 + 0.89) / 2, 1e-12);
}

TEST(MarginLoss, UnsquaredMatchesHandComputedValue) {
  // The seed: 0.5 * 0.2 = 0.1 and 0.8 + 0.5 * 0.1 + 0.5 * 0.7 = 1.2.
  MarginLossOptions options;
  options.squared = false;
  EXPECT_NEAR(margin_loss(lengths(), labels(), options).item<double>(), (0.1 + 1.2) / 2, 1e-12);
}

TEST(MarginLoss, ZeroWhenEveryMarginIsMet) {
  auto perfect = at::tensor({0.95, 0.05, 0.0, 0.02, 0.01, 0.99}, at::kDouble).view({2, 3});
  EXPECT_EQ(margin_loss(perfect, labels()).item<double>(), 0.0);
}

TEST(MarginLoss, GradientMatchesFiniteDifferences) {
  auto l = lengths().clone().requires_grad_(true);
  const double error =
      testing::max_gradient_error([&] { return margin_loss(l, labels()); }, {l});
  EXPECT_LT(error, 1e-7);
}

TEST(MarginLoss, RejectsMismatchedLabels) {
  EXPECT_THROW(margin_loss(lengths(), at::tensor({0}, at::kLong)), c10::Error);
}

TEST(ReconstructionLoss, SumOfSquaresPerImageAndMeanOverPixels) {
  auto reconstruction = at::tensor({0.5, 0.25, 1.0, 0.0}, at::kDouble).view({2, 1, 1, 2});
  auto target = at::tensor({0.0, 0.0, 0.5, 0.5}, at::kDouble).view({2, 1, 1, 2});
  // Squared errors: (0.25, 0.0625) and (0.25, 0.25).
  EXPECT_NEAR(reconstruction_loss(reconstruction, target).item<double>(), (0.3125 + 0.5) / 2,
              1e-12);
  EXPECT_NEAR(
      reconstruction_loss(reconstruction, target, ReconstructionLoss::kMeanSquared).item<double>(),
      0.8125 / 4, 1e-12);
  EXPECT_THROW(reconstruction_loss(reconstruction, target.view({4})), c10::Error);
}

TEST(ReconstructionLoss, NamesRoundTrip) {
  EXPECT_EQ(parse_enum<ReconstructionLoss>("sse"), ReconstructionLoss::kSumSquared);
  EXPECT_EQ(parse_enum<ReconstructionLoss>("mse"), ReconstructionLoss::kMeanSquared);
  EXPECT_THROW(parse_enum<ReconstructionLoss>("l1"), std::invalid_argument);
}

} // namespace
} // namespace capsnet
