#include "capsnet/model/capsnet.h"
#include "capsnet/ops/im2col_conv.h"
#include "test_util.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>

namespace capsnet {
namespace {

struct ConvCase {
  int64_t batch, channels, height, width, out_channels, kernel, stride;
};

std::string name_of(const ConvCase& p) {
  return "B" + std::to_string(p.batch) + "_C" + std::to_string(p.channels) + "_" +
         std::to_string(p.height) + "x" + std::to_string(p.width) + "_O" +
         std::to_string(p.out_channels) + "_K" + std::to_string(p.kernel) + "_S" +
         std::to_string(p.stride);
}

at::Tensor bf16_rounded(const at::Tensor& t) { return t.to(at::kBFloat16).to(at::kDouble); }

// Largest |a - b| relative to the largest |b|.
double relative_error(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b).abs().max().item<double>() / b.abs().max().item<double>();
}

class Bf16ConvMatchesConv2d : public ::testing::TestWithParam<ConvCase> {};

// The reference is at::conv2d in double on the same bf16-rounded operands, so
// what remains is the rounding of the GEMM outputs to bf16 (2^-9 relative) and
// the order of summation.
TEST_P(Bf16ConvMatchesConv2d, ForwardAndGradients) {
  const auto p = GetParam();
  at::manual_seed(p.batch + p.kernel);
  auto x = at::randn({p.batch, p.channels, p.height, p.width}).requires_grad_(true);
  auto weight = (at::randn({p.out_channels, p.channels, p.kernel, p.kernel}) * 0.1)
                    .requires_grad_(true);
  auto bias = at::randn({p.out_channels}).requires_grad_(true);
  auto y = conv2d_bf16(x, weight, bias, p.stride);
  auto upstream = at::randn(y.sizes());
  y.backward(upstream);

  auto xr = bf16_rounded(x.detach()).requires_grad_(true);
  auto wr = bf16_rounded(weight.detach()).requires_grad_(true);
  auto br = bias.detach().to(at::kDouble).requires_grad_(true);
  auto expected = at::conv2d(xr, wr, br, {p.stride, p.stride});
  // The op rounds the upstream gradient to bf16 for its GEMMs.
  expected.backward(bf16_rounded(upstream));

  ASSERT_EQ(y.sizes(), expected.sizes());
  EXPECT_LT(relative_error(y.detach(), expected.detach()), 8e-3);
  {
    // Without autograd: the chunked inference path (64 images at a time).
    at::NoGradGuard no_grad;
    EXPECT_LT(relative_error(conv2d_bf16(x, weight, bias, p.stride), expected.detach()), 8e-3);
  }
  EXPECT_LT(relative_error(x.grad(), xr.grad()), 8e-3);
  EXPECT_LT(relative_error(weight.grad(), wr.grad()), 8e-3);
  // The bias gradient is summed in fp32 from the unrounded upstream gradient.
  EXPECT_TRUE(at::allclose(bias.grad().to(at::kDouble), upstream.to(at::kDouble).sum({0, 2, 3}),
                           1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Bf16ConvMatchesConv2d,
    ::testing::Values(ConvCase{2, 256, 20, 20, 256, 9, 2}, // the paper's primary capsules
                      ConvCase{3, 3, 11, 13, 5, 3, 2},     // odd batch, non-square, ragged edge
                      ConvCase{1, 7, 9, 9, 4, 5, 1},       // stride 1
                      ConvCase{5, 2, 6, 6, 3, 6, 3},       // kernel as large as the input
                      ConvCase{70, 4, 10, 10, 6, 3, 2}),   // inference in chunks of 64 + 6
    [](const auto& info) { return name_of(info.param); });

TEST(Bf16Conv, SameResultOnOneAndTwoThreads) {
  const int saved = at::get_num_threads();
  at::manual_seed(3);
  auto x = at::randn({3, 8, 12, 12}).requires_grad_(true);
  auto weight = at::randn({6, 8, 5, 5}).requires_grad_(true);
  auto bias = at::randn({6}).requires_grad_(true);
  std::vector<at::Tensor> results;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    x.mutable_grad() = at::Tensor();
    weight.mutable_grad() = at::Tensor();
    auto y = conv2d_bf16(x, weight, bias, 2);
    y.sum().backward();
    results.push_back(y.detach());
    results.push_back(x.grad().clone());
  }
  at::set_num_threads(saved);
  EXPECT_TRUE(at::equal(results[0], results[2]));
  EXPECT_TRUE(at::equal(results[1], results[3]));
}

TEST(Bf16Conv, RejectsWrongShapesAndTypes) {
  auto x = at::randn({2, 3, 10, 10});
  auto weight = at::randn({4, 3, 3, 3});
  auto bias = at::randn({4});
  EXPECT_THROW(conv2d_bf16(x.view({6, 10, 10}), weight, bias, 1), c10::Error);
  EXPECT_THROW(conv2d_bf16(x, at::randn({4, 2, 3, 3}), bias, 1), c10::Error);
  EXPECT_THROW(conv2d_bf16(x, weight, at::randn({5}), 1), c10::Error);
  EXPECT_THROW(conv2d_bf16(x, weight, bias, 0), c10::Error);
  EXPECT_THROW(conv2d_bf16(x.to(at::kDouble), weight, bias, 1), c10::Error);
  EXPECT_THROW(conv2d_bf16(at::randn({2, 3, 2, 2}), weight, bias, 1), c10::Error);
}

TEST(Precision, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(precision_from_string("bf16"), Precision::kBf16);
  EXPECT_EQ(precision_from_string("fp32"), Precision::kFp32);
  EXPECT_EQ(to_string(Precision::kBf16), "bf16");
  EXPECT_THROW(precision_from_string("fp16"), std::invalid_argument);
}

TEST(Precision, FallsBackToFp32WithAMessageWithoutBf16Hardware) {
  ::setenv("CAPSNET_NO_BF16", "1", 1);
  std::ostringstream warnings;
  const auto chosen = usable_precision(Precision::kBf16, warnings);
  ::unsetenv("CAPSNET_NO_BF16");
  EXPECT_EQ(chosen, Precision::kFp32);
  EXPECT_NE(warnings.str().find("running in fp32"), std::string::npos) << warnings.str();
  EXPECT_NE(warnings.str().find("CAPSNET_NO_BF16"), std::string::npos) << warnings.str();

  std::ostringstream quiet;
  EXPECT_EQ(usable_precision(Precision::kFp32, quiet), Precision::kFp32);
  EXPECT_TRUE(quiet.str().empty());
}

TEST(Precision, Bf16ModelAgreesWithFp32Model) {
  at::manual_seed(5);
  CapsNet model(testing::tiny_config());
  auto images = at::rand({4, 1, 12, 12});
  auto fp32 = model->capsules(images).detach();
  model->set_precision(Precision::kBf16);
  auto bf16 = model->capsules(images).detach();
  EXPECT_FALSE(at::equal(fp32, bf16)); // the bf16 path really ran
  EXPECT_LT((fp32 - bf16).abs().max().item<double>(), 2e-2 * fp32.abs().max().item<double>());
}

} // namespace
} // namespace capsnet
