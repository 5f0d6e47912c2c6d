#include "capsnet/registry/flops.h"
#include "capsnet/losses/capsule_losses.h"
#include "capsnet/model/capsnet.h"
#include "capsnet/ops/squash.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <map>

namespace capsnet {
namespace {

TEST(CapsNetConfig, PaperSizesFollowFromTheConfig) {
  CapsNetConfig config;
  EXPECT_EQ(config.primary_grid(), 6);
  EXPECT_EQ(config.num_primary_capsules(), 1152);
  auto tiny = testing::tiny_config();
  EXPECT_EQ(tiny.primary_grid(), 4);
  EXPECT_EQ(tiny.num_primary_capsules(), 32);
}

TEST(CapsNetConfig, RejectsInconsistentSizes) {
  CapsNetConfig config;
  config.image_size = 16; // conv1 leaves 8x8, too small for a 9x9 primary kernel
  EXPECT_THROW(config.validate(), std::invalid_argument);
  config = CapsNetConfig{};
  config.routing_iterations = 0;
  EXPECT_THROW(CapsNet{config}, std::invalid_argument);
}

TEST(CapsNet, ParametersMapOneToOneOntoTheSeeds) {
  CapsNet model;
  std::map<std::string, std::vector<int64_t>> expected = {
      {"conv1.weight", {256, 1, 9, 9}},
      {"conv1.bias", {256}},
      {"primary_capsules.conv.weight", {256, 256, 9, 9}}, // the seed's conv2
      {"primary_capsules.conv.bias", {256}},
      {"digit_capsules.weight", {1152, 10, 8, 16}},
      {"decoder.0.weight", {512, 160}},
      {"decoder.0.bias", {512}},
      {"decoder.2.weight", {1024, 512}},
      {"decoder.2.bias", {1024}},
      {"decoder.4.weight", {784, 1024}},
      {"decoder.4.bias", {784}}};
  std::map<std::string, std::vector<int64_t>> actual;
  for (const auto& p : model->named_parameters()) actual[p.key()] = p.value().sizes().vec();
  EXPECT_EQ(actual, expected);
}

TEST(CapsNet, ForwardShapesAndPredictionIsLongestCapsule) {
  torch::manual_seed(0);
  CapsNet model;
  auto out = model->forward(at::rand({2, 1, 28, 28}));
  EXPECT_EQ(out.capsules.sizes(), (at::IntArrayRef{2, 10, 16}));
  EXPECT_EQ(out.reconstruction.sizes(), (at::IntArrayRef{2, 1, 28, 28}));
  EXPECT_TRUE(at::allclose(out.lengths, out.capsules.pow(2).sum(-1).sqrt()));
  EXPECT_TRUE(out.predictions.equal(out.lengths.argmax(1)));
  EXPECT_LT(out.lengths.max().item<float>(), 1.0f);
  EXPECT_GE(out.reconstruction.min().item<float>(), 0.0f);
  EXPECT_LE(out.reconstruction.max().item<float>(), 1.0f);
}

TEST(PrimaryCapsules, UsesTheSeedsCapsuleGrouping) {
  torch::manual_seed(1);
  auto config = testing::tiny_config();
  PrimaryCapsules primary(PrimaryCapsulesOptions(3, config.primary_types, config.primary_dim)
                              .kernel_size(3)
                              .stride(2));
  auto x = at::randn({2, 3, 10, 10});
  auto y = primary->conv->forward(x); // [B, D * T, 4, 4]
  auto caps = primary->forward(x);    // [B, T * 16, D]
  const int64_t T = config.primary_types, D = config.primary_dim, HW = 16;
  ASSERT_EQ(caps.sizes(), (at::IntArrayRef{2, T * HW, D}));
  auto expected = at::empty({2, T * HW, D});
  for (int64_t i = 0; i < T * HW; ++i)
    for (int64_t d = 0; d < D; ++d)
      expected.select(1, i).select(1, d).copy_(y.select(1, d * T + i / HW).select(1, i % HW / 4).select(1, i % 4));
  EXPECT_TRUE(at::allclose(caps, squash(expected), 1e-6, 1e-6));
}

TEST(CapsNet, DecoderSeesOnlyTheMaskedCapsule) {
  torch::manual_seed(2);
  CapsNet model(testing::tiny_config());
  auto caps = at::randn({1, 10, 4}) * 0.3;
  auto classes = at::tensor({2}, at::kLong);
  auto changed = caps.clone();
  changed.select(1, 0).fill_(0.7);
  changed.select(1, 9).fill_(-0.4);
  EXPECT_TRUE(at::allclose(model->reconstruct(caps, classes), model->reconstruct(changed, classes)));
  changed.select(1, 2).fill_(0.5);
  EXPECT_FALSE(at::allclose(model->reconstruct(caps, classes), model->reconstruct(changed, classes)));
}

TEST(CapsNet, WholeModelGradientMatchesFiniteDifferencesInDouble) {
  torch::manual_seed(5);
  CapsNet model(testing::tiny_config());
  model->to(at::kDouble);
  auto images = at::rand({2, 1, 12, 12}, at::kDouble);
  auto labels = at::tensor({1, 7}, at::kLong);
  auto loss = [&] {
    auto out = model->forward(images, labels);
    return margin_loss(out.lengths, labels) + 0.1 * reconstruction_loss(out.reconstruction, images);
  };
  std::vector<at::Tensor> params;
  for (auto& p : model->parameters()) params.push_back(p);
  EXPECT_LT(testing::max_gradient_error(loss, params, 30), 1e-6);
}

TEST(ModelFlops, PaperNetworkByHand) {
  const auto f = model_flops(CapsNetConfig{});
  EXPECT_EQ(f.conv1, 2.0 * 20 * 20 * 256 * 81);            // 16,588,800
  EXPECT_EQ(f.primary, 2.0 * 6 * 6 * 256 * 256 * 81);      // 382,205,952
  EXPECT_EQ(f.prediction, 2.0 * 1152 * 10 * 8 * 16);       // 2,949,120
  EXPECT_EQ(f.routing, 2.0 * 1152 * 10 * 16 * (3 + 2));    // 3 sums s_j, 2 agreement updates
  EXPECT_EQ(f.decoder, 2.0 * (160 * 512 + 512 * 1024 + 1024 * 784));
  EXPECT_EQ(f.forward(), 406405120.0);
  EXPECT_EQ(f.training(), 1202626560.0); // the ~1.2 GFLOP per image of issue 3
}

} // namespace
} // namespace capsnet
