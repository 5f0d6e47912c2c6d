#include "capsnet/data/digit_augment.h"
#include "capsnet/registry/flops.h"
#include "capsnet/registry/task.h"
#include "capsnet/model/efficient_capsnet.h"
#include "capsnet/ops/attention_routing.h"
#include "capsnet/ops/dynamic_routing.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <torch/nn/modules/batchnorm.h>

#include <cmath>
#include <vector>

namespace capsnet {
namespace {

// The authors' FCCaps (utils/layers.py) transcribed loop by loop, on
// u_hat [B, N_in, K, D]: A^j = U^j U^j^T / sqrt(D), logit_ij = sum_k A^j_ik,
// c_i = softmax over j, s_j = sum_i (c_ij + b_ij) u_hat_{j|i}, v_j = squash(s_j)
// with the squash of Eq. 4: (1 - 1 / (e^|s| + eps)) s / (|s| + eps).
at::Tensor literal_attention_routing(const at::Tensor& u_hat, const at::Tensor& bias) {
  const auto u = u_hat.to(at::kDouble);
  const auto b = bias.to(at::kDouble);
  const int64_t B = u.size(0), N = u.size(1), K = u.size(2), D = u.size(3);
  auto v = at::zeros({B, K, D}, at::kDouble);
  auto U = u.accessor<double, 4>();
  auto V = v.accessor<double, 3>();
  auto prior = b.accessor<double, 2>();
  for (int64_t n = 0; n < B; ++n) {
    std::vector<std::vector<double>> logit(N, std::vector<double>(K, 0.0));
    for (int64_t j = 0; j < K; ++j) {
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t k = 0; k < N; ++k) { // A^j_ik
          double a = 0;
          for (int64_t d = 0; d < D; ++d) a += U[n][i][j][d] * U[n][k][j][d];
          logit[i][j] += a / std::sqrt(static_cast<double>(D));
        }
      }
    }
    for (int64_t i = 0; i < N; ++i) {
      double top = logit[i][0], total = 0;
      for (int64_t j = 1; j < K; ++j) top = std::max(top, logit[i][j]);
      for (int64_t j = 0; j < K; ++j) total += std::exp(logit[i][j] - top);
      for (int64_t j = 0; j < K; ++j) {
        const double c = std::exp(logit[i][j] - top) / total + prior[i][j];
        for (int64_t d = 0; d < D; ++d) V[n][j][d] += c * U[n][i][j][d];
      }
    }
    for (int64_t j = 0; j < K; ++j) {
      double norm = 0;
      for (int64_t d = 0; d < D; ++d) norm += V[n][j][d] * V[n][j][d];
      norm = std::sqrt(norm);
      const double scale = (1 - 1 / (std::exp(norm) + kEfficientSquashEps)) / (norm + kEfficientSquashEps);
      for (int64_t d = 0; d < D; ++d) V[n][j][d] *= scale;
    }
  }
  return v;
}

class AttentionRouting : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(AttentionRouting, MatchesTheLoopTranscriptionOfTheAuthorsLayer) {
  const auto dtype = GetParam();
  at::manual_seed(5);
  for (auto [B, N, K, D] : std::vector<std::array<int64_t, 4>>{{3, 16, 10, 16}, {2, 7, 3, 5},
                                                                {1, 1, 2, 1}}) {
    const auto u_hat = at::randn({B, N, K, D}, at::TensorOptions().dtype(dtype)) * 0.3;
    const auto bias = at::randn({N, K}, at::TensorOptions().dtype(dtype)) * 0.1;
    const auto expected = literal_attention_routing(u_hat, bias);
    const auto actual = attention_routing(u_hat, bias).to(at::kDouble);
    const double tol = dtype == at::kFloat ? 2e-6 : 1e-12;
    EXPECT_TRUE(at::allclose(actual, expected, tol, tol))
        << "B" << B << " N" << N << " K" << K << " D" << D << ": max difference "
        << (actual - expected).abs().max().item<double>();
  }
}

TEST_P(AttentionRouting, GradientsMatchFiniteDifferences) {
  const auto dtype = GetParam();
  at::manual_seed(6);
  const auto options = at::TensorOptions().dtype(dtype);
  // Through W and u as the network uses it: u_hat = prediction_vectors(u, W).
  auto u = (at::randn({2, 5, 3}, options) * 0.5).requires_grad_(true);
  auto weight = (at::randn({5, 4, 3, 6}, options) * 0.4).requires_grad_(true);
  auto bias = (at::randn({5, 4}, options) * 0.1).requires_grad_(true);
  const auto upstream = at::randn({2, 4, 6}, options);
  auto loss = [&] {
    return (attention_routing(prediction_vectors(u, weight), bias) * upstream).sum();
  };
  loss().backward();
  // Central differences in double precision are exact to ~1e-9; float's to its rounding.
  const double h = dtype == at::kDouble ? 1e-6 : 1e-2;
  const double tol = dtype == at::kDouble ? 1e-7 : 2e-3;
  for (auto* t : {&u, &weight, &bias}) {
    const auto grad = t->grad().clone();
    auto flat = t->detach().view(-1);
    for (int64_t k = 0; k < flat.numel(); ++k) {
      at::NoGradGuard no_grad;
      const double saved = flat[k].item<double>();
      flat[k] = saved + h;
      const double up = loss().item<double>();
      flat[k] = saved - h;
      const double down = loss().item<double>();
      flat[k] = saved;
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(grad.view(-1)[k].item<double>(), numeric, tol * (1 + std::abs(numeric)))
          << "element " << k << " of a [" << t->sizes() << "] input";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(FloatAndDouble, AttentionRouting,
                         ::testing::Values(at::kFloat, at::kDouble),
                         [](const auto& info) {
                           return std::string(info.param == at::kFloat ? "float" : "double");
                         });

TEST(AttentionRouting, CouplingIsASoftmaxOverTheParents) {
  at::manual_seed(7);
  at::Tensor c;
  attention_routing(at::randn({4, 16, 10, 16}), at::zeros({16, 10}), &c);
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{4, 16, 10}));
  EXPECT_TRUE(at::allclose(c.sum(2), at::ones({4, 16}), 1e-5, 1e-6));
  EXPECT_TRUE((c > 0).all().item<bool>());
}

TEST(EfficientSquash, LengthIsOneMinusExpOfMinusTheNorm) {
  const auto s = at::tensor({3.0, 4.0}, at::kDouble).view({1, 2}); // |s| = 5
  const auto v = efficient_squash(s);
  EXPECT_NEAR(v.norm().item<double>(), 1 - std::exp(-5.0), 1e-12);
  EXPECT_NEAR(v[0][0].item<double>() / v[0][1].item<double>(), 0.75, 1e-12); // same direction
  EXPECT_EQ(efficient_squash(at::zeros({2, 3})).abs().sum().item<double>(), 0.0); // finite at 0
}

int64_t trainable(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters()) n += p.numel();
  return n;
}

// The derivation (docs/efficient-capsnet.md): stem convolutions 832 + 18,496
// + 36,928 + 73,856, batch norm scale and shift 2 * (32 + 64 + 64 + 128) = 576,
// depthwise 9 * 9 * 128 + 128 = 10,496, W 16 * 10 * 8 * 16 = 20,480 and b 160:
// 161,824 trainable. Keras's summary adds the 576 moving means and variances:
// 162,400 in all; the paper rounds to 161K.
TEST(EfficientCapsNet, MnistNetworkHasThePapersParameterCount) {
  EfficientCapsNetConfig config;
  EXPECT_EQ(config.parameter_count(), 161824);
  EfficientCapsNet model(config);
  const int64_t decoder = trainable(*model->decoder);
  EXPECT_EQ(decoder, 160 * 512 + 512 + 512 * 1024 + 1024 + 1024 * 784 + 784);
  EXPECT_EQ(trainable(*model) - decoder, 161824);
  int64_t moving = 0;
  for (const auto& b : model->buffers()) moving += b.numel();
  EXPECT_EQ(trainable(*model) - decoder + moving, 162400);
  EXPECT_EQ(config.stem_grid(), 9);
  EXPECT_EQ(config.num_primary_capsules(), 16);
}

// By hand: the stem 2 * (24^2 * 32 * 25 + 22^2 * 64 * 288 + 20^2 * 64 * 576
// + 9^2 * 128 * 576) = 60,198,912; depthwise 2 * 128 * 81; u_hat 2 * 16 * 10 * 8
// * 16; routing 3 * 2 * 16 * 10 * 16; decoder 2 * (160 * 512 + 512 * 1024 + 1024
// * 784). Training: three forwards less conv1's input gradient (921,600).
// --precision bf16: the stem's convolutions in bfloat16, the rest in fp32.
// The primary capsules agree with fp32 to bfloat16's precision (8 bits: 2^-8
// relative per rounding, a few roundings deep) and are not fp32's exactly
// (bf16 did run); gradients reach the fp32 weights.
TEST(EfficientCapsNet, Bf16StemFollowsFp32) {
  torch::manual_seed(5);
  EfficientCapsNet model;
  model->train();
  const auto images = at::rand({4, 1, 28, 28});
  const auto fp32 = model->primary(images).detach();
  model->set_precision(Precision::kBf16);
  const auto bf16 = model->primary(images);
  const double largest = (bf16.detach() - fp32).abs().max().item<double>();
  EXPECT_GT(largest, 0) << "bf16 gave fp32's values: the stem did not run in bf16";
  EXPECT_LT(largest, 0.05);
  EXPECT_LT((bf16.detach() - fp32).abs().mean().item<double>(), 5e-3);
  EXPECT_EQ(bf16.scalar_type(), at::kFloat);
  bf16.square().sum().backward();
  for (const auto& conv : model->convs) {
    ASSERT_TRUE(conv->weight.grad().defined());
    EXPECT_EQ(conv->weight.grad().scalar_type(), at::kFloat);
    EXPECT_TRUE(conv->weight.grad().isfinite().all().item<bool>());
    EXPECT_GT(conv->weight.grad().abs().sum().item<double>(), 0);
  }
}

// The primary capsules as the stem's modules, at::relu, at::batch_norm and
// LibTorch's depthwise convolution compute them, in training (the fused
// relu + batch norm) and in evaluation.
TEST(EfficientCapsNet, PrimaryCapsulesEqualLibTorchsOwnOps) {
  torch::manual_seed(8);
  EfficientCapsNet model;
  const auto images = at::rand({5, 1, 28, 28});
  for (const bool training : {true, false}) {
    model->train(training);
    const auto got = model->primary(images);
    auto x = images;
    for (size_t k = 0; k < model->convs.size(); ++k) {
      auto& norm = *model->norms[k];
      // Copies: training uses the batch's statistics and updates only these.
      auto mean = norm.running_mean.clone(), var = norm.running_var.clone();
      x = at::batch_norm(at::relu(model->convs[k]->forward(x)), norm.weight, norm.bias, mean, var,
                         training, norm.momentum, norm.eps, false);
    }
    const auto& dw = *model->primary_capsules;
    const std::vector<int64_t> one{1, 1}, none{0, 0};
    x = at::conv2d(x, dw.weight, dw.bias, one, none, one, /*groups=*/x.size(1)); // [B, F, 1, 1]
    const auto expected = efficient_squash(x.reshape({5, 16, 8}));
    EXPECT_TRUE(at::allclose(got, expected, 1e-4, 1e-5))
        << (training ? "training: " : "evaluation: ") << (got - expected).abs().max();
  }
}

TEST(EfficientCapsNet, FlopsPerImage) {
  const auto f = model_flops(EfficientCapsNetConfig{});
  EXPECT_DOUBLE_EQ(f.conv1, 60198912);
  EXPECT_DOUBLE_EQ(f.first_layer, 921600);
  EXPECT_DOUBLE_EQ(f.primary, 20736);
  EXPECT_DOUBLE_EQ(f.prediction, 40960);
  EXPECT_DOUBLE_EQ(f.routing, 15360);
  EXPECT_DOUBLE_EQ(f.decoder, 2818048);
  EXPECT_DOUBLE_EQ(f.forward(), 63094016);
  EXPECT_DOUBLE_EQ(f.training(), 3 * 63094016.0 - 921600);
}

TEST(EfficientCapsNet, ParameterCountFollowsOtherSizes) {
  EfficientCapsNetConfig config;
  config.image_size = 32;
  config.in_channels = 3;
  config.num_classes = 7;
  config.primary_dim = 4;
  EfficientCapsNet model(config);
  EXPECT_EQ(trainable(*model) - trainable(*model->decoder), config.parameter_count());
  const auto out = model->forward(at::rand({2, 3, 32, 32}));
  EXPECT_EQ(out.capsules.sizes(), (std::vector<int64_t>{2, 7, 16}));
  EXPECT_EQ(out.reconstruction.sizes(), (std::vector<int64_t>{2, 3, 32, 32}));
  EXPECT_TRUE((out.lengths < 1).all().item<bool>());
}

TEST(EfficientCapsNet, RefusesImagesTooSmallForItsStem) {
  EfficientCapsNetConfig config;
  config.image_size = 10; // 10 -> 6 -> 4 -> 2: too small for the last 3x3 kernel
  EXPECT_THROW(
      {
        try {
          config.validate();
        } catch (const std::invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find("too small for the stem"), std::string::npos)
              << e.what();
          throw;
        }
      },
      std::invalid_argument);
}

TEST(EfficientCapsNet, InitialisationFollowsKeras) {
  at::manual_seed(1);
  EfficientCapsNet model;
  // he_normal, truncated at two standard deviations of sqrt(2 / fan_in) / 0.8796.
  const double w_std = std::sqrt(2.0 / (8 * 10 * 16)) / 0.87962566103423978;
  EXPECT_LE(model->weight.abs().max().item<double>(), 2 * w_std + 1e-9);
  EXPECT_NEAR(model->weight.std().item<double>(), std::sqrt(2.0 / (8 * 10 * 16)), 0.002);
  EXPECT_EQ(model->routing_bias.abs().sum().item<double>(), 0.0);
  const double conv1_std = std::sqrt(2.0 / 25);
  EXPECT_NEAR(model->convs[0]->weight.std().item<double>(), conv1_std, 0.1 * conv1_std);
}

TEST(EfficientCapsNet, CouplingOfTheForwardPass) {
  at::manual_seed(2);
  EfficientCapsNet model;
  model->eval();
  const auto images = at::rand({3, 1, 28, 28});
  const auto c = model->coupling(images);
  ASSERT_EQ(c.sizes(), (std::vector<int64_t>{3, 16, 10}));
  EXPECT_TRUE(at::allclose(c.sum(2), at::ones({3, 16}), 1e-5, 1e-6));
}

TEST(EfficientCapsNet, TrainsThroughTheCapsuleTask) {
  at::manual_seed(3);
  EfficientCapsNetConfig config;
  config.num_classes = 3;
  auto model = EfficientCapsNet(config);
  CapsNetObjective objective;
  objective.recon_weight = 0.392;
  objective.recon_loss = ReconstructionLoss::kMeanSquared;
  CapsNetTask task(model.ptr(), objective);
  Batch batch;
  batch.images = at::rand({6, 1, 28, 28});
  batch.labels = at::tensor({0, 1, 2, 0, 1, 2}, at::kLong);
  batch.targets = at::one_hot(batch.labels, 3).to(at::kFloat);
  batch.recon_targets = batch.images;
  const auto out = task.forward(batch, /*training=*/true);
  out.loss.backward();
  EXPECT_TRUE(model->weight.grad().defined());
  EXPECT_GT(model->weight.grad().abs().sum().item<double>(), 0);
  EXPECT_GT(model->convs[0]->weight.grad().abs().sum().item<double>(), 0);
}

// The batch norm's cross-rank path with one rank (the identity as the sum)
// computes what at::batch_norm does: outputs, gradients and running statistics.
TEST(BatchNorm, GlobalStatisticsPathEqualsATenInOneProcess) {
  at::manual_seed(4);
  BatchNorm reference(5, 0.01, 1e-3), global(5, 0.01, 1e-3);
  global->reduce = [](const at::Tensor& t) { return t; };
  const auto x = at::randn({4, 5, 3, 3}, at::kDouble) * 2 + 1;
  for (auto* m : {&reference, &global}) {
    (*m)->to(at::kDouble);
    (*m)->weight.data().uniform_(0.5, 1.5);
    (*m)->bias.data().uniform_(-0.5, 0.5);
  }
  global->weight.data().copy_(reference->weight.data());
  global->bias.data().copy_(reference->bias.data());
  const auto upstream = at::randn({4, 5, 3, 3}, at::kDouble);
  auto xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
  (reference->forward(xa) * upstream).sum().backward();
  (global->forward(xb) * upstream).sum().backward();
  EXPECT_TRUE(at::allclose(xa.grad(), xb.grad(), 1e-10, 1e-12));
  EXPECT_TRUE(at::allclose(reference->weight.grad(), global->weight.grad(), 1e-10, 1e-12));
  EXPECT_TRUE(at::allclose(reference->running_mean, global->running_mean, 1e-12, 1e-14));
  EXPECT_TRUE(at::allclose(reference->running_var, global->running_var, 1e-12, 1e-14));
  reference->eval();
  global->eval();
  EXPECT_TRUE(at::allclose(reference->forward(x), global->forward(x), 1e-12, 1e-12));
}

// The fused BN(relu(x)) of training against at::relu then at::batch_norm:
// outputs, the three gradients and the running statistics, in double (to
// rounding) and float (to float's), planar and channels last (75 and 27
// pixels: one block and a part), on planes of 25 and 9 values (vector tails)
// and with a channel that the ReLU leaves all zero (variance 0).
class FusedReluBatchNorm : public ::testing::TestWithParam<at::ScalarType> {};

TEST_P(FusedReluBatchNorm, EqualsATensReluAndBatchNorm) {
  const auto dtype = GetParam();
  const double tol = dtype == at::kDouble ? 1e-11 : 2e-5;
  for (const auto layout : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    for (const int64_t side : {5, 3}) {
      at::manual_seed(6 + side);
      BatchNorm fused(6, 0.1, 1e-3);
      fused->to(dtype);
      fused->weight.data().uniform_(0.5, 1.5);
      fused->bias.data().uniform_(-0.5, 0.5);
      fused->running_mean.data().uniform_(-1, 1);
      auto x0 = at::randn({3, 6, side, side}, dtype) * 2 + 0.5;
      x0.select(1, 2).abs_().neg_(); // channel 2 all <= 0
      auto x = x0.detach().contiguous(layout).requires_grad_(true);
      const auto upstream = at::randn({3, 6, side, side}, dtype);
      auto weight = fused->weight.detach().clone().requires_grad_(true);
      auto bias = fused->bias.detach().clone().requires_grad_(true);
      auto mean = fused->running_mean.clone(), var = fused->running_var.clone();
      auto xr = x0.detach().clone().requires_grad_(true);
      const auto expected = at::batch_norm(at::relu(xr), weight, bias, mean, var,
                                           /*training=*/true, 0.1, 1e-3, /*cudnn_enabled=*/false);
      (expected * upstream).sum().backward();
      const auto y = fused->forward_relu(x, dtype);
      (y * upstream).sum().backward();
      // Channels last stays so with fp32 weights; double goes through the planar kernel.
      EXPECT_TRUE(y.is_contiguous(dtype == at::kFloat ? layout : at::MemoryFormat::Contiguous));
      EXPECT_TRUE(at::allclose(y, expected, tol, tol)) << (y - expected).abs().max();
      EXPECT_TRUE(at::allclose(x.grad(), xr.grad(), tol, tol))
          << (x.grad() - xr.grad()).abs().max();
      EXPECT_TRUE(at::allclose(fused->weight.grad(), weight.grad(), tol, tol));
      EXPECT_TRUE(at::allclose(fused->bias.grad(), bias.grad(), tol, tol));
      EXPECT_TRUE(at::allclose(fused->running_mean, mean, tol, tol));
      EXPECT_TRUE(at::allclose(fused->running_var, var, tol, tol));
      EXPECT_EQ(x.grad().select(1, 2).abs().max().item<double>(), 0.0);
      EXPECT_GT(x.grad().abs().max().item<double>(), 0.01); // not all zero either
    }
  }
}

// bf16 in (the bf16 stem's convolutions), bf16 or fp32 out, computed in fp32,
// planar and channels last: as the conversion to fp32, the two ops and a
// conversion to the output's dtype, to one rounding to bf16 (2^-8 relative)
// of the outputs and x's gradient.
TEST(FusedReluBatchNorm, Bf16InputEqualsConvertingAroundATensOps) {
  const auto close = [](const at::Tensor& a, const at::Tensor& b) {
    return at::allclose(a.to(at::kFloat), b.to(at::kFloat), 1.0 / 128, 1e-4);
  };
  for (const auto layout : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {
    for (const auto out : {at::kBFloat16, at::kFloat}) {
      at::manual_seed(9);
      BatchNorm fused(5, 0.1, 1e-3);
      fused->weight.data().uniform_(0.5, 1.5);
      fused->bias.data().uniform_(-0.5, 0.5);
      const auto x0 = (at::randn({4, 5, 6, 6}) * 2 + 0.5).to(at::kBFloat16).contiguous(layout);
      const auto upstream = at::randn({4, 5, 6, 6});
      auto weight = fused->weight.detach().clone().requires_grad_(true);
      auto bias = fused->bias.detach().clone().requires_grad_(true);
      auto mean = fused->running_mean.clone(), var = fused->running_var.clone();
      auto xr = x0.clone().requires_grad_(true), x = x0.clone().requires_grad_(true);
      const auto expected = at::batch_norm(at::relu(xr.to(at::kFloat)), weight, bias, mean, var,
                                           /*training=*/true, 0.1, 1e-3, false)
                                .to(out);
      (expected.to(at::kFloat) * upstream).sum().backward();
      const auto y = fused->forward_relu(x, out);
      ASSERT_EQ(y.scalar_type(), out);
      (y.to(at::kFloat) * upstream).sum().backward();
      ASSERT_EQ(x.grad().scalar_type(), at::kBFloat16);
      EXPECT_TRUE(y.is_contiguous(layout));
      EXPECT_TRUE(x.grad().is_contiguous(layout));
      EXPECT_TRUE(close(y, expected)) << (y.to(at::kFloat) - expected.to(at::kFloat)).abs().max();
      EXPECT_TRUE(close(x.grad(), xr.grad()));
      EXPECT_TRUE(at::allclose(fused->weight.grad(), weight.grad(), 1e-4, 1e-5));
      EXPECT_TRUE(at::allclose(fused->bias.grad(), bias.grad(), 1e-4, 1e-5));
      EXPECT_TRUE(at::allclose(fused->running_mean, mean, 1e-5, 1e-6));
      EXPECT_TRUE(at::allclose(fused->running_var, var, 1e-5, 1e-6));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(FloatAndDouble, FusedReluBatchNorm,
                         ::testing::Values(at::kFloat, at::kDouble));

at::Tensor digit() { // a 28x28 bar of ink, rows 8-19, columns 12-15
  auto image = at::zeros({1, 28, 28});
  image.narrow(1, 8, 12).narrow(2, 12, 4).fill_(1.0);
  return image;
}

TEST(DigitAugment, KeepsTheInkInsideAndErasesOnePatch) {
  std::mt19937_64 rng(11);
  int rotated = 0;
  for (int trial = 0; trial < 200; ++trial) {
    auto image = digit();
    const auto d = augment_digit(image, rng);
    rotated += d.rotated;
    EXPECT_LE(std::abs(d.angle_degrees), 29);
    EXPECT_GE(d.squish, 1);
    EXPECT_LE(d.squish, 7);
    EXPECT_GE(d.erase_row, 4);
    EXPECT_LT(d.erase_row, 23);
    EXPECT_EQ(image.narrow(1, d.erase_row, 4).narrow(2, d.erase_col, 4).abs().sum().item<double>(), 0);
    EXPECT_GE(image.min().item<double>(), 0);
    EXPECT_LE(image.max().item<double>(), 1 + 1e-6);
    // The shift moves the bar by at most its margins: no ink wraps around.
    if (!d.rotated) {
      EXPECT_GE(d.shift_y, -8);
      EXPECT_LE(d.shift_y, 8);
      EXPECT_GE(d.shift_x, -12);
      EXPECT_LE(d.shift_x, 12);
    }
  }
  EXPECT_GT(rotated, 60); // about half
  EXPECT_LT(rotated, 140);
}

TEST(DigitAugment, SquishNarrowsTheDigit) {
  // With the rotation and shift undone, the ink's width after squish w is
  // about 4 * (28 - w) / 28, and the ink's total mass shrinks the same way.
  std::mt19937_64 rng(12);
  for (int trial = 0; trial < 50; ++trial) {
    auto image = digit();
    const auto d = augment_digit(image, rng);
    const double mass = image.sum().item<double>();
    const double erased_at_most = 16;
    const double expected = 48.0 * (28 - d.squish) / 28;
    if (!d.rotated) {
      EXPECT_LE(mass, expected + 1e-3);
      EXPECT_GE(mass, expected - erased_at_most - 1e-3);
    }
  }
}

TEST(DigitAugment, BatchesKeepTheirShapeAndBlackStaysBlack) {
  std::mt19937_64 rng(3);
  const auto batch = augment_digits(at::zeros({2, 1, 28, 28}), rng);
  EXPECT_EQ(batch.sizes(), (std::vector<int64_t>{2, 1, 28, 28}));
  EXPECT_EQ(batch.abs().sum().item<double>(), 0);
}

} // namespace
} // namespace capsnet
