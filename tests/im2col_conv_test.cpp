#include "capsnet/registry/options.h"
#include "capsnet/registry/task.h"
#include "capsnet/model/capsnet.h"
#include "capsnet/ops/im2col_conv.h"
#include "test_util.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <iostream>
#include <optional>
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

// Sets an environment variable for one scope, restoring what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    value ? ::setenv(name, value, 1) : ::unsetenv(name);
  }
  ~ScopedEnv() { old_ ? ::setenv(name_, old_->c_str(), 1) : ::unsetenv(name_); }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Unit roundoffs: bf16 keeps 8 significant bits, fp32 24.
constexpr double kBf16Unit = 1.0 / 256;
constexpr double kFp32Unit = 1.0 / (1 << 24);

// How each op's result must relate to at::conv2d in double: the operands it
// rounds (to bf16 or not) and the rounding of each GEMM result (bf16 or fp32).
enum class Arith { kFp32Im2col, kFp32Mixed, kBf16, kBf16Widened };

std::string name_of(Arith arith) {
  switch (arith) {
    case Arith::kFp32Im2col: return "fp32_im2col";
    case Arith::kFp32Mixed: return "fp32_onednn_forward";
    case Arith::kBf16: return "bf16";
    default: return "bf16_widened";
  }
}

at::Tensor run_op(Arith arith, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                  int64_t stride) {
  if (arith == Arith::kFp32Im2col || arith == Arith::kFp32Mixed) {
    return conv2d_im2col(x, w, b, stride, /*onednn_forward=*/arith == Arith::kFp32Mixed);
  }
  return conv2d_bf16(x, w, b, stride);
}

// Every element of `got` is within `bound` of `expected`; on failure, prints the worst one.
void expect_within(const at::Tensor& got, const at::Tensor& expected, const at::Tensor& bound,
                   const char* what) {
  auto excess = (got.to(at::kDouble) - expected).abs() - bound;
  const auto worst = excess.flatten().argmax().item<int64_t>();
  EXPECT_LE(excess.flatten()[worst].item<double>(), 0.0)
      << what << ": element " << worst << " is " << got.flatten()[worst].item<double>()
      << ", expected " << expected.flatten()[worst].item<double>() << " within "
      << bound.flatten()[worst].item<double>();
}

class ConvMatchesConv2d
    : public ::testing::TestWithParam<std::tuple<Arith, ConvCase>> {};

// The reference is at::conv2d in double on the operands as the op rounds them.
// The bounds are derived, not fitted: a sum of n products accumulated in fp32
// in any order is off by at most n u32 times the sum of the products'
// magnitudes, and rounding a result to bf16 (to fp32) adds u16 (u32) times
// its magnitude. The magnitudes come from the same convolution in double on
// |x|, |w| and |upstream|. They hold on every CPU: oneDNN's bf16 GEMMs
// (AVX512-BF16, AMX) and sgemm on widened bf16 operands both accumulate in fp32.
TEST_P(ConvMatchesConv2d, ForwardAndGradientsWithinDerivedBounds) {
  const auto [arith, p] = GetParam();
  std::optional<ScopedEnv> no_bf16;
  if (arith == Arith::kBf16Widened) no_bf16.emplace("CAPSNET_NO_BF16", "1");
  const bool bf16 = arith == Arith::kBf16 || arith == Arith::kBf16Widened;
  const double round = bf16 ? kBf16Unit : kFp32Unit;
  at::manual_seed(p.batch + p.kernel);
  auto x = at::randn({p.batch, p.channels, p.height, p.width}).requires_grad_(true);
  auto weight = (at::randn({p.out_channels, p.channels, p.kernel, p.kernel}) * 0.1)
                    .requires_grad_(true);
  auto bias = at::randn({p.out_channels}).requires_grad_(true);
  auto y = run_op(arith, x, weight, bias, p.stride);
  auto upstream = at::randn(y.sizes());
  y.backward(upstream);
  at::Tensor y_inference;
  {
    // Without autograd: the inference path (bf16: 64 images at a time).
    at::NoGradGuard no_grad;
    y_inference = run_op(arith, x, weight, bias, p.stride);
  }
  no_bf16.reset();

  auto operand = [&](const at::Tensor& t) {
    return bf16 ? bf16_rounded(t.detach()) : t.detach().to(at::kDouble);
  };
  auto xr = operand(x).requires_grad_(true);
  auto wr = operand(weight).requires_grad_(true);
  auto br = bias.detach().to(at::kDouble).requires_grad_(true);
  auto expected = at::conv2d(xr, wr, br, {p.stride, p.stride});
  // The bf16 op rounds the upstream gradient to bf16 for its GEMMs.
  expected.backward(operand(upstream));
  // The same convolution on magnitudes: sum |x||w| per output, and the sums of
  // |upstream||w| and |upstream||x| that make up grad_x and grad_weight.
  auto xa = xr.detach().abs().requires_grad_(true);
  auto wa = wr.detach().abs().requires_grad_(true);
  auto magnitude = at::conv2d(xa, wa, {}, {p.stride, p.stride});
  magnitude.backward(operand(upstream).abs());

  const int64_t n_forward = p.channels * p.kernel * p.kernel;
  const int64_t n_weight = p.batch * y.size(2) * y.size(3);
  // A pixel is in at most ceil(K / S)^2 patches: col2im adds that many.
  const int64_t overlap = (p.kernel + p.stride - 1) / p.stride;
  const int64_t n_input = p.out_channels + overlap * overlap;
  const auto y_bound = (round + 2 * n_forward * kFp32Unit) * magnitude.detach() +
                       2 * kFp32Unit * (expected.detach().abs() + br.detach().abs().view({1, -1, 1, 1}));
  ASSERT_EQ(y.sizes(), expected.sizes());
  expect_within(y.detach(), expected.detach(), y_bound, "forward");
  expect_within(y_inference, expected.detach(), y_bound, "forward without autograd");
  expect_within(x.grad(), xr.grad(), (round + 2 * n_input * kFp32Unit) * xa.grad(), "grad_x");
  expect_within(weight.grad(), wr.grad(), (round + 2 * n_weight * kFp32Unit) * wa.grad(),
                "grad_weight");
  // The bias gradient is summed in fp32 from the unrounded upstream gradient.
  const auto n_bias = n_weight;
  expect_within(bias.grad(), upstream.to(at::kDouble).sum({0, 2, 3}),
                2 * n_bias * kFp32Unit * upstream.to(at::kDouble).abs().sum({0, 2, 3}), "grad_bias");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, ConvMatchesConv2d,
    ::testing::Combine(
        ::testing::Values(Arith::kFp32Im2col, Arith::kFp32Mixed, Arith::kBf16,
                          Arith::kBf16Widened),
        ::testing::Values(ConvCase{2, 256, 20, 20, 256, 9, 2}, // the paper's primary capsules
                          ConvCase{3, 3, 11, 13, 5, 3, 2},     // odd batch, non-square, ragged edge
                          ConvCase{1, 7, 9, 9, 4, 5, 1},       // stride 1
                          ConvCase{3, 2, 13, 11, 4, 9, 1},     // conv1's 9x9 at stride 1, non-square
                          ConvCase{5, 2, 6, 6, 3, 6, 3},       // kernel as large as the input
                          ConvCase{70, 4, 10, 10, 6, 3, 2})),  // bf16 inference: chunks of 64 + 6
    [](const auto& info) {
      return name_of(std::get<0>(info.param)) + "_" + name_of(std::get<1>(info.param));
    });

// The bounds above are not loose enough to hide a wrong rounding: an op that
// skipped the bf16 rounding of x would be off by far more than n u32 |x||w|.
TEST(ConvBounds, CatchAnUnroundedOperand) {
  at::manual_seed(11);
  auto x = at::randn({2, 16, 9, 9});
  auto w = at::randn({8, 16, 3, 3}) * 0.1;
  auto fp32 = at::conv2d(x, w, {}, 2).to(at::kDouble);
  auto rounded = at::conv2d(bf16_rounded(x), bf16_rounded(w), {}, 2);
  auto magnitude = at::conv2d(bf16_rounded(x).abs(), bf16_rounded(w).abs(), {}, 2);
  const double n = 16 * 9;
  EXPECT_GT(((fp32 - rounded).abs() - 2 * n * kFp32Unit * magnitude).max().item<double>(), 0.0);
}

// Winograd F(2x2, 5x5) on the phases of a stride-2 9x9 convolution, literally
// (the paper's notation: Lavin and Gray 2016), in double on x, w and the
// transform matrices as given; with `absolute`, on their absolute values;
// with `wrong_sign`, one entry of G of the wrong sign.
// What conv2d_winograd computes, by other code: tensors and matmul, not the
// kernels' loops.
at::Tensor literal_winograd(const at::Tensor& x, const at::Tensor& w, bool absolute,
                            bool wrong_sign = false) {
  auto matrix = [&](std::vector<double> values, int64_t rows, int64_t cols) {
    auto m = at::tensor(values, at::kDouble).view({rows, cols});
    return absolute ? m.abs() : m;
  };
  const auto bt = matrix({4, 0, -5, 0, 1, 0, 0, -4, -4, 1, 1, 0, 0, 4, -4, -1, 1, 0,
                          0, -2, -1, 2, 1, 0, 0, 2, -1, -2, 1, 0, 0, 4, 0, -5, 0, 1}, 6, 6);
  const auto at_ = matrix({1, 1, 1, 1, 1, 0, 0, 1, -1, 2, -2, 1}, 2, 6);
  const auto g = matrix({1. / 4, 0, 0, 0, 0, -1. / 6, -1. / 6, -1. / 6, -1. / 6, -1. / 6,
                         -1. / 6, 1. / 6, -1. / 6, 1. / 6, -1. / 6,
                         1. / 24, 1. / 12, 1. / 6, 1. / 3, 2. / 3,
                         1. / 24, wrong_sign ? 1. / 12 : -1. / 12, 1. / 6, -1. / 3, 2. / 3,
                         0, 0, 0, 0, 1}, 6, 5);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), O = w.size(0);
  const int64_t TH = (H / 2 - 4) / 2, TW = (W / 2 - 4) / 2;
  // Phases: xp[b][(p, q, c)][i][j] = x[b][c][2i + p][2j + q], likewise the kernel padded to 10x10.
  auto xp = x.view({B, C, H / 2, 2, W / 2, 2}).permute({0, 3, 5, 1, 2, 4}).reshape({B, 4 * C, H / 2, W / 2});
  auto wp = at::constant_pad_nd(w, {0, 1, 0, 1}).view({O, C, 5, 2, 5, 2}).permute({0, 3, 5, 1, 2, 4})
                .reshape({O, 4 * C, 5, 5});
  auto d = xp.unfold(2, 6, 2).unfold(3, 6, 2);                       // [B, 4C, TH, TW, 6, 6]
  auto v = at::matmul(at::matmul(bt, d), bt.t());                   // B^T d B
  auto u = at::matmul(at::matmul(g, wp), g.t());                    // G g G^T, [O, 4C, 6, 6]
  auto m = at::einsum("bctsxy,ocxy->botsxy", {v, u});               // summed over 4C
  auto y = at::matmul(at::matmul(at_, m), at_.t());                 // [B, O, TH, TW, 2, 2]
  return y.permute({0, 1, 2, 4, 3, 5}).reshape({B, O, 2 * TH, 2 * TW});
}

class WinogradMatchesConv2d : public ::testing::TestWithParam<ConvCase> {};

// The value is checked against at::conv2d in double; the bound is the rounding
// error of the Winograd computation: each result of a sequence of n fp32
// roundings (each of the transforms' sums, the entries of G, the products,
// the GEMMs' sums) is off by at most about n u32 times the same computation on
// absolute values (literal_winograd with `absolute`; its gradients bound the
// backward's). n: 4C terms in the forward GEMM plus the transforms' stages
// (6 terms each, two per transform: input, weights, output; 1/6 and 1/24
// rounded), O terms plus the overlapping tiles' sums for grad_x, B * tiles for
// grad_weight; doubled, as in ConvMatchesConv2d.
TEST_P(WinogradMatchesConv2d, ForwardAndGradientsWithinDerivedBounds) {
  const auto p = GetParam();
  at::manual_seed(p.batch + p.channels);
  auto x = at::randn({p.batch, p.channels, p.height, p.width}).requires_grad_(true);
  auto weight = (at::randn({p.out_channels, p.channels, 9, 9}) * 0.1).requires_grad_(true);
  auto bias = at::randn({p.out_channels}).requires_grad_(true);
  ASSERT_TRUE(winograd_covers(x, weight, 2));
  auto y = conv2d_winograd(x, weight, bias, 2);
  auto upstream = at::randn(y.sizes());
  y.backward(upstream);
  at::Tensor y_inference;
  {
    at::NoGradGuard no_grad;
    y_inference = conv2d_winograd(x, weight, bias, 2);
  }

  auto xr = x.detach().to(at::kDouble).requires_grad_(true);
  auto wr = weight.detach().to(at::kDouble).requires_grad_(true);
  auto br = bias.detach().to(at::kDouble).requires_grad_(true);
  auto expected = at::conv2d(xr, wr, br, {2, 2});
  expected.backward(upstream.to(at::kDouble));
  auto xa = xr.detach().abs().requires_grad_(true);
  auto wa = wr.detach().abs().requires_grad_(true);
  auto magnitude = literal_winograd(xa, wa, /*absolute=*/true);
  magnitude.backward(upstream.to(at::kDouble).abs());
  // The literal Winograd (signed) is the convolution itself, to double's rounding.
  EXPECT_LT((literal_winograd(xr.detach(), wr.detach(), false) + br.detach().view({1, -1, 1, 1}) -
             expected.detach()).abs().max().item<double>(),
            1e-9 * magnitude.max().item<double>());

  const int64_t stages = 40, tiles = (p.height / 2 - 4) / 2 * ((p.width / 2 - 4) / 2);
  const double n_forward = 4 * p.channels + stages, n_input = p.out_channels + 9 + stages,
               n_weight = p.batch * tiles + stages;
  const auto y_bound = 2 * n_forward * kFp32Unit * magnitude.detach() +
                       2 * kFp32Unit * (expected.detach().abs() + br.detach().abs().view({1, -1, 1, 1}));
  ASSERT_EQ(y.sizes(), expected.sizes());
  expect_within(y.detach(), expected.detach(), y_bound, "forward");
  expect_within(y_inference, expected.detach(), y_bound, "forward without autograd");
  expect_within(conv2d_fp32(x, weight, bias, 2, ConvAlgo::kWinograd).detach(), expected.detach(),
                y_bound, "forward through conv2d_fp32 (--conv winograd)");
  expect_within(x.grad(), xr.grad(), 2 * n_input * kFp32Unit * xa.grad(), "grad_x");
  expect_within(weight.grad(), wr.grad(), 2 * n_weight * kFp32Unit * wa.grad(), "grad_weight");
  // The errors themselves, beside the direct fp32 convolution's (README,
  // "Winograd"): reported, the bounds above are the check.
  const auto error = [&](const at::Tensor& t) {
    return (t.detach().to(at::kDouble) - expected.detach()).abs().max().item<double>();
  };
  std::cout << "largest forward error against double: Winograd " << error(y) << ", direct fp32 "
            << error(at::conv2d(x.detach(), weight.detach(), bias.detach(), 2)) << ", largest |y| "
            << expected.detach().abs().max().item<double>() << std::endl;
  expect_within(bias.grad(), upstream.to(at::kDouble).sum({0, 2, 3}),
                2 * p.batch * tiles * 4 * kFp32Unit * upstream.to(at::kDouble).abs().sum({0, 2, 3}),
                "grad_bias");
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, WinogradMatchesConv2d,
    ::testing::Values(ConvCase{2, 256, 20, 20, 256, 9, 2}, // the paper's primary capsules
                      ConvCase{3, 3, 16, 12, 5, 9, 2},     // non-square, 3 of 16 SIMD lanes
                      ConvCase{70, 16, 44, 44, 4, 9, 2}),  // 81 tiles: groups of 64 + 6 images
    [](const auto& info) { return name_of(info.param); });

// Winograd's magnitudes are larger than the direct convolution's (64 times
// here: B^T's rows sum to 10 in absolute value), so its bound is looser; it
// still catches a wrong transform: G with one entry of the wrong sign.
TEST(WinogradBounds, CatchAWrongTransform) {
  at::manual_seed(5);
  auto x = at::randn({2, 64, 20, 20}, at::kDouble);
  auto w = at::randn({8, 64, 9, 9}, at::kDouble) * 0.1;
  auto exact = at::conv2d(x, w, {}, {2, 2});
  auto magnitude = literal_winograd(x.abs(), w.abs(), /*absolute=*/true);
  auto wrong = literal_winograd(x, w, /*absolute=*/false, /*wrong_sign=*/true);
  const double n = 4 * 64 + 40;
  EXPECT_GT(((wrong - exact).abs() - 2 * n * kFp32Unit * magnitude).max().item<double>(), 0.0);
}

TEST(WinogradConv, CoversTheStride2Kernel9ShapesAndRejectsOthers) {
  auto w = at::randn({4, 3, 9, 9});
  EXPECT_TRUE(winograd_covers(at::randn({1, 3, 20, 20}), w, 2));
  EXPECT_TRUE(winograd_covers(at::randn({1, 3, 24, 16}), w, 2));
  EXPECT_FALSE(winograd_covers(at::randn({1, 3, 20, 20}), w, 1));         // stride 1
  EXPECT_FALSE(winograd_covers(at::randn({1, 3, 21, 21}), w, 2));         // odd sides
  EXPECT_FALSE(winograd_covers(at::randn({1, 3, 22, 22}), w, 2));         // 7x7 output
  EXPECT_FALSE(winograd_covers(at::randn({1, 3, 20, 20}), at::randn({4, 3, 5, 5}), 2));
  EXPECT_THROW(conv2d_winograd(at::randn({1, 3, 22, 22}), w, at::zeros({4}), 2), c10::Error);
  // conv2d_fp32 runs what Winograd does not cover as kMixed: the same values as conv2d.
  auto x = at::randn({2, 3, 22, 22});
  auto b = at::randn({4});
  EXPECT_TRUE(at::allclose(conv2d_fp32(x, w, b, 2, ConvAlgo::kWinograd), at::conv2d(x, w, b, 2),
                           1e-5, 1e-5));
}

// auto takes Winograd where it covers the shape and a backward follows (the
// same values as conv2d_winograd, bit for bit), oneDNN's forward without one
// (those of conv2d_im2col with the oneDNN forward); the sizes overload agrees.
TEST(WinogradConv, AutoTakesItForTrainingOnly) {
  at::manual_seed(8);
  auto x = at::randn({3, 3, 16, 12});
  auto w = at::randn({5, 3, 9, 9}).requires_grad_(true);
  auto b = at::randn({5}).requires_grad_(true);
  EXPECT_TRUE(winograd_covers(16, 12, 9, 2));
  EXPECT_FALSE(winograd_covers(16, 12, 9, 1));
  auto trained = conv2d_fp32(x, w, b, 2, ConvAlgo::kAuto);
  EXPECT_TRUE(at::equal(trained, conv2d_winograd(x, w, b, 2)));
  at::NoGradGuard no_grad;
  auto inferred = conv2d_fp32(x, w, b, 2, ConvAlgo::kAuto);
  EXPECT_TRUE(at::equal(inferred, conv2d_im2col(x, w, b, 2, /*onednn_forward=*/true)));
  // The two differ in rounding only.
  EXPECT_FALSE(at::equal(trained.detach(), inferred));
  EXPECT_TRUE(at::allclose(trained.detach(), inferred, 1e-4, 1e-4));
}

// Each output is computed by one thread in one order, by oneDNN where the CPU
// has bf16 and by sgemm on widened operands where it has not: both split the
// work over outputs, not over the reduction.
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

TEST(CpuFeatures, AgreeWithTheCompilersCpuid) {
  __builtin_cpu_init();
  const auto& cpu = cpu_features();
  EXPECT_EQ(cpu.avx2, static_cast<bool>(__builtin_cpu_supports("avx2")));
  EXPECT_EQ(cpu.fma, static_cast<bool>(__builtin_cpu_supports("fma")));
  EXPECT_EQ(cpu.avx512, __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                            __builtin_cpu_supports("avx512dq") &&
                            __builtin_cpu_supports("avx512vl"));
  EXPECT_EQ(cpu.intel, static_cast<bool>(__builtin_cpu_is("intel")));
  EXPECT_FALSE(cpu.model.empty());
  EXPECT_NE(cpu.describe().find(cpu.model), std::string::npos);
  std::cout << "this CPU: " << cpu.describe() << "; capsnet kernels " << enum_name(kernel_isa())
            << "\n";
}

TEST(CpuFeatures, KernelIsaFollowsAtenCpuCapability) {
  const auto& cpu = cpu_features();
  const auto widest = cpu.avx512 && cpu.fma ? KernelIsa::kAvx512
                      : cpu.avx2 && cpu.fma ? KernelIsa::kAvx2
                                            : KernelIsa::kBaseline;
  const std::string limit = cpu.aten_capability;
  if (limit == "avx2") {
    EXPECT_EQ(kernel_isa(), std::min(widest, KernelIsa::kAvx2));
  } else if (limit == "default") {
    EXPECT_EQ(kernel_isa(), KernelIsa::kBaseline);
  } else {
    EXPECT_EQ(kernel_isa(), widest);
  }
}

TEST(Bf16Support, NamesWhatIsMissing) {
  ScopedEnv no_override("CAPSNET_NO_BF16", nullptr);
  const auto& cpu = cpu_features();
  {
    ScopedEnv limited("ONEDNN_MAX_CPU_ISA", "AVX2");
    const auto support = cpu_bf16_support();
    EXPECT_FALSE(support.available);
    // A CPU with bf16 is held back by the limit; one without is named.
    const std::string expected =
        cpu.avx512_bf16 || cpu.amx_bf16 ? "ONEDNN_MAX_CPU_ISA=AVX2" : cpu.model;
    EXPECT_NE(support.why_not.find(expected), std::string::npos) << support.why_not;
  }
  ScopedEnv unlimited("ONEDNN_MAX_CPU_ISA", nullptr);
  const auto support = cpu_bf16_support();
  EXPECT_EQ(support.available, cpu.avx512_bf16 || cpu.amx_bf16);
  if (!support.available) {
    EXPECT_NE(support.why_not.find("neither AVX512-BF16 nor AMX-BF16"), std::string::npos)
        << support.why_not;
  }
}

TEST(Bf16Support, SaysWhereBf16IsNotFaster) {
  CpuFeatures cpu;
  cpu.model = "Some Xeon";
  cpu.avx2 = cpu.fma = cpu.avx512 = cpu.avx512_bf16 = true;
  cpu.intel = true; // AVX512-BF16 without AMX on Intel: no faster than fp32
  const auto note = bf16_not_faster(cpu);
  EXPECT_NE(note.find("Some Xeon"), std::string::npos) << note;
  EXPECT_NE(note.find("no AMX-BF16"), std::string::npos) << note;
  cpu.amx_bf16 = true; // AMX: several times fp32
  EXPECT_EQ(bf16_not_faster(cpu), "");
  cpu.amx_bf16 = false;
  cpu.intel = false; // AMD Zen 4 and Zen 5: twice fp32's rate
  EXPECT_EQ(bf16_not_faster(cpu), "");
  cpu.intel = true;
  cpu.avx512_bf16 = false; // no bf16 at all: cpu_bf16_support() says so instead
  EXPECT_EQ(bf16_not_faster(cpu), "");

  // usable_precision() keeps bf16 where it runs and warns where it is not faster.
  ScopedEnv no_override("CAPSNET_NO_BF16", nullptr);
  ScopedEnv unlimited("ONEDNN_MAX_CPU_ISA", nullptr);
  const auto support = cpu_bf16_support();
  std::ostringstream warnings;
  const auto chosen = usable_precision(Precision::kBf16, warnings);
  EXPECT_EQ(chosen, support.available ? Precision::kBf16 : Precision::kFp32);
  EXPECT_EQ(support.not_faster, support.available ? bf16_not_faster(cpu_features()) : "");
  EXPECT_EQ(warnings.str().find("may be slower than fp32") != std::string::npos,
            !support.not_faster.empty())
      << warnings.str();
}

TEST(ConvAlgo, ParsesNamesAndStatesTheRule) {
  for (auto algo : {ConvAlgo::kAuto, ConvAlgo::kIm2col, ConvAlgo::kOneDnn, ConvAlgo::kMixed,
                    ConvAlgo::kWinograd}) {
    EXPECT_EQ(parse_enum<ConvAlgo>(enum_name(algo)), algo);
  }
  EXPECT_THROW(parse_enum<ConvAlgo>("fft"), std::invalid_argument);
  EXPECT_EQ(conv_algo_for(ConvAlgo::kAuto, 256), ConvAlgo::kMixed);
  EXPECT_EQ(conv_algo_for(ConvAlgo::kAuto, 1), ConvAlgo::kIm2col);
  // Winograd where it covers the shape and a backward follows.
  EXPECT_EQ(conv_algo_for(ConvAlgo::kAuto, 256, true, true), ConvAlgo::kWinograd);
  EXPECT_EQ(conv_algo_for(ConvAlgo::kAuto, 256, true, false), ConvAlgo::kMixed);
  EXPECT_EQ(conv_algo_for(ConvAlgo::kAuto, 256, false, true), ConvAlgo::kMixed);
  EXPECT_EQ(conv_algo_for(ConvAlgo::kAuto, 1, true, true), ConvAlgo::kIm2col);
  EXPECT_EQ(conv_algo_for(ConvAlgo::kMixed, 256, true, true), ConvAlgo::kMixed);
  EXPECT_EQ(conv_algo_for(ConvAlgo::kOneDnn, 1), ConvAlgo::kOneDnn);
  EXPECT_EQ(conv_algo_for(ConvAlgo::kMixed, 1), ConvAlgo::kMixed);
}

// The model's three fp32 paths sum the same products in fp32, in other orders.
// The longest sums here are the weight gradients' (6 images x 10 x 10
// positions = 600 products), which two orders can make differ by at most
// 2 * 600 * 2^-24 (7e-5) of the sum of the products' magnitudes; 1e-4 of the
// largest value allows for that where, as here, magnitudes and values are of
// one order, and is far below what a wrong index or a missing term gives.
TEST(ConvAlgo, ModelOutputsAndGradientsAgreeAcrossPaths) {
  at::manual_seed(9);
  CapsNet model(testing::tiny_config());
  auto images = at::rand({6, 1, 12, 12});
  std::vector<at::Tensor> capsules, grads;
  for (auto algo : {ConvAlgo::kOneDnn, ConvAlgo::kIm2col, ConvAlgo::kMixed}) {
    model->set_conv_algo(algo);
    model->zero_grad();
    auto out = model->capsules(images);
    out.pow(2).sum().backward();
    capsules.push_back(out.detach());
    grads.push_back(model->primary_capsules->conv->weight.grad().clone());
    grads.push_back(model->conv1->weight.grad().clone());
  }
  auto close = [](const at::Tensor& a, const at::Tensor& b) {
    return (a - b).abs().max().item<double>() <= 1e-4 * b.abs().max().item<double>();
  };
  for (int k = 1; k < 3; ++k) {
    EXPECT_TRUE(close(capsules[k], capsules[0])) << "path " << k;
    EXPECT_TRUE(close(grads[2 * k], grads[0])) << "path " << k;
    EXPECT_TRUE(close(grads[2 * k + 1], grads[1])) << "path " << k;
  }
}

TEST(ConvAlgo, TrainOptionsChooseItAndTheTaskSetsIt) {
  CapsNet model(testing::tiny_config());
  CapsNetTask task(model, CapsNetObjective{});
  EXPECT_EQ(model->primary_capsules->options.conv_algo(), ConvAlgo::kAuto);
  task.set_execution(RoutingImpl::kReference, Precision::kFp32, ConvAlgo::kOneDnn);
  EXPECT_EQ(model->primary_capsules->options.conv_algo(), ConvAlgo::kOneDnn);
  EXPECT_EQ(model->digit_capsules->options.impl(), RoutingImpl::kReference);
  task.set_execution(RoutingImpl::kFused, Precision::kFp32); // the default: auto
  EXPECT_EQ(model->primary_capsules->options.conv_algo(), ConvAlgo::kAuto);

  // config.json and checkpoints record it; runs from before --conv read "auto".
  TrainOptions options;
  options.conv = ConvAlgo::kIm2col;
  auto json = nlohmann::json(options);
  EXPECT_EQ(json.at("conv"), "im2col");
  EXPECT_EQ(train_options_from_json(json).conv, ConvAlgo::kIm2col);
  json.erase("conv");
  EXPECT_EQ(train_options_from_json(json).conv, ConvAlgo::kAuto);
}

TEST(Precision, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(parse_enum<Precision>("bf16"), Precision::kBf16);
  EXPECT_EQ(parse_enum<Precision>("fp32"), Precision::kFp32);
  EXPECT_EQ(enum_name(Precision::kBf16), "bf16");
  EXPECT_THROW(parse_enum<Precision>("fp16"), std::invalid_argument);
}

TEST(Precision, FallsBackToFp32WithAMessageWithoutBf16Hardware) {
  std::ostringstream warnings;
  Precision chosen;
  {
    ScopedEnv no_bf16("CAPSNET_NO_BF16", "1");
    chosen = usable_precision(Precision::kBf16, warnings);
  }
  EXPECT_EQ(chosen, Precision::kFp32);
  EXPECT_NE(warnings.str().find("running in fp32"), std::string::npos) << warnings.str();
  EXPECT_NE(warnings.str().find("CAPSNET_NO_BF16"), std::string::npos) << warnings.str();

  std::ostringstream quiet;
  EXPECT_EQ(usable_precision(Precision::kFp32, quiet), Precision::kFp32);
  EXPECT_TRUE(quiet.str().empty());
}

// The model with its convolutions in bf16 (set directly, so on a CPU without
// bf16 it runs the widened path: the same roundings) stays within 3.2e-2 of
// the fp32 model's capsules: eight bf16 unit roundoffs (2^-8), five for the
// primary capsules' operands and products carried through squash and three
// routing iterations of a small model, and three for conv1's (its image,
// weight and output).
TEST(Precision, Bf16ModelAgreesWithFp32Model) {
  at::manual_seed(5);
  CapsNet model(testing::tiny_config());
  auto images = at::rand({4, 1, 12, 12});
  auto fp32 = model->capsules(images).detach();
  model->set_precision(Precision::kBf16);
  auto bf16 = model->capsules(images).detach();
  EXPECT_FALSE(at::equal(fp32, bf16)); // the bf16 path really ran
  EXPECT_LT((fp32 - bf16).abs().max().item<double>(), 3.2e-2 * fp32.abs().max().item<double>())
      << "largest capsule value " << fp32.abs().max().item<double>();
}

} // namespace
} // namespace capsnet
