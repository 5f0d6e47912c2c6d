#include "capsnet/losses/capsule_losses.h"
#include "capsnet/losses/objective.h"
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

TEST(MarginLoss, SeveralPositivesMatchEquationFour) {
  // MultiMNIST-style targets: image 0 holds classes 0 and 1, image 1 class 2 only.
  auto targets = at::tensor({1.0, 1.0, 0.0, 0.0, 0.0, 1.0}, at::kDouble).view({2, 3});
  // Image 0: (0.9 - 0.3)^2 for present class 1, nothing for class 0 (0.95 > 0.9),
  // nothing for absent class 2 (0.05 < 0.1): 0.36. Image 1 as before: 0.89.
  EXPECT_NEAR(margin_loss(lengths(), targets).item<double>(), (0.36 + 0.89) / 2, 1e-12);
  // One-hot targets are the labels.
  auto one_hot = at::tensor({1.0, 0.0, 0.0, 0.0, 0.0, 1.0}, at::kDouble).view({2, 3});
  EXPECT_EQ(margin_loss(lengths(), one_hot).item<double>(),
            margin_loss(lengths(), labels()).item<double>());
  EXPECT_THROW(margin_loss(lengths(), at::ones({2, 4}, at::kDouble)), c10::Error);
}

TEST(CapsNetObjective, MarginPlusWeightedReconstructionOfEveryMaskedCapsule) {
  CapsNetObjective objective; // the paper's: squared margin, 0.0005 * SSE
  auto reconstruction = at::full({2, 2, 1, 2, 2}, 0.5, at::kDouble); // two per image
  auto target = at::zeros({2, 2, 1, 2, 2}, at::kDouble);
  auto targets = at::tensor({1.0, 1.0, 0.0, 0.0, 0.0, 1.0}, at::kDouble).view({2, 3});
  const auto terms = objective(lengths(), targets, reconstruction, target);
  // Per image: 2 reconstructions x 4 pixels x 0.25 = 2, summed, then the batch mean.
  EXPECT_NEAR(terms.reconstruction.item<double>(), 2.0, 1e-12);
  EXPECT_NEAR(terms.margin.item<double>(), (0.36 + 0.89) / 2, 1e-12);
  EXPECT_NEAR(terms.total.item<double>(), (0.36 + 0.89) / 2 + 0.0005 * 2.0, 1e-12);
  objective.recon_weight = 0;
  const auto margin_only = objective(lengths(), targets, {}, {});
  EXPECT_FALSE(margin_only.reconstruction.defined());
  EXPECT_EQ(margin_only.total.item<double>(), terms.margin.item<double>());
}

} // namespace
} // namespace capsnet
