#include "capsnet/ops/im2col_conv.h"

#include "cpu/im2col_kernel.h"
#include "cpu/winograd_kernel.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <ostream>
#include <stdexcept>

namespace capsnet {

Precision usable_precision(Precision requested, std::ostream& warnings,
                           const c10::Device& device) {
  if (requested != Precision::kBf16 || !device.is_cpu()) return requested;
  const auto support = cpu_bf16_support();
  if (support.available) {
    if (!support.not_faster.empty()) {
      warnings << "capsnet: warning: bf16 may be slower than fp32 here: " << support.not_faster
               << std::endl;
    }
    return requested;
  }
  warnings << "capsnet: bf16 needs a CPU with AMX-BF16 or AVX512-BF16, but " << support.why_not
           << "; running in fp32 instead" << std::endl;
  return Precision::kFp32;
}

ConvAlgo conv_algo_for(ConvAlgo requested, int64_t in_channels, bool winograd_covered,
                       bool backward) {
  // The rule, from `capsnet bench --conv ...` (docs/performance.md, "Choosing the
  // convolution"): oneDNN 2.6's fp32 forward runs at the sgemm's speed on
  // AVX2 and AVX-512 alike, its backward does not (on AVX2, three times the
  // GEMM cost), so the forward is oneDNN's and the backward im2col + sgemm.
  // A convolution of one input channel (conv1 on gray images) is im2col both
  // ways: its patch matrix is small (81 values a position) and oneDNN's
  // forward of it was the slower, 0.064 against 0.039 s a step (0.045 against
  // 0.028 s as AVX2) on a Zen 5 EPYC. Where Winograd covers the shape (the
  // primary capsules) and a backward follows, Winograd: 14% more training
  // images/s than kMixed on a Zen 3 (AVX2), 11-38% on a Zen 5 natively and as
  // AVX2, the same 1-epoch MNIST accuracy. Without a backward its transforms
  // cost more than they save, and oneDNN's forward stays.
  // --conv winograd where Winograd does not apply: auto's choice.
  if (requested == ConvAlgo::kWinograd && !winograd_covered) requested = ConvAlgo::kAuto;
  if (requested != ConvAlgo::kAuto) return requested;
  if (in_channels == 1) return ConvAlgo::kIm2col;
  return winograd_covered && backward ? ConvAlgo::kWinograd : ConvAlgo::kMixed;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_conv_args(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                     int64_t stride, const char* op) {
  TORCH_CHECK(x.dim() == 4, "expected x of shape [B, C, H, W], got ", x.sizes());
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) == weight.size(3),
              "expected weight of shape [O, ", x.size(1), ", K, K], got ", weight.sizes());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "expected bias of shape [",
              weight.size(0), "], got ", bias.sizes());
  TORCH_CHECK(stride >= 1, "expected a positive stride, got ", stride);
  TORCH_CHECK(x.size(2) >= weight.size(2) && x.size(3) >= weight.size(3), "input ", x.sizes(),
              " is smaller than the kernel ", weight.sizes());
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu() && bias.device().is_cpu(), op,
              " runs on the CPU");
  TORCH_CHECK(x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
                  bias.scalar_type() == at::kFloat,
              op, " takes float tensors, got ", x.scalar_type(), ", ", weight.scalar_type(), ", ",
              bias.scalar_type());
}

bool needs_grad(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) {
  return at::GradMode::is_enabled() &&
         (x.requires_grad() || weight.requires_grad() || bias.requires_grad());
}

cpu::ConvShape conv_shape(const at::Tensor& x, const at::Tensor& weight, int64_t stride) {
  return {x.size(1), x.size(2), x.size(3), weight.size(2), stride};
}

std::vector<int64_t> to_vector(const cpu::ConvShape& s) {
  return {s.channels, s.height, s.width, s.kernel, s.stride};
}

cpu::ConvShape from_vector(const std::vector<int64_t>& d) { return {d[0], d[1], d[2], d[3], d[4]}; }

uint16_t* bits(const at::Tensor& t) { return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>()); }

at::Tensor to_bf16(const at::Tensor& t) {
  auto in = t.contiguous();
  auto out = at::empty(in.sizes(), in.options().dtype(at::kBFloat16));
  const int64_t n = in.numel();
  const float* src = in.data_ptr<float>();
  uint16_t* dst = bits(out);
  at::parallel_for(0, n, 1 << 16, [&](int64_t begin, int64_t end) {
    cpu::float_to_bf16(src + begin, end - begin, dst + begin);
  });
  return out;
}

// out = a b for bf16 a, b: oneDNN where the CPU has bf16 instructions, else
// the widened operands through sgemm and the result rounded to bf16 (see the
// header). Small products are widened everywhere: LibTorch 1.13 hands bf16
// products of at most 16^3 multiply-adds to its own kernel instead of oneDNN,
// and that kernel's errors exceed one bf16 rounding of an fp32 sum (measured
// on the 5 x 72 x 3 product of the tests' smallest case).
void bf16_mm_out(at::Tensor& out, const at::Tensor& a, const at::Tensor& b) {
  constexpr int64_t kSmall = 1 << 16;
  if (a.size(0) * a.size(1) * b.size(1) > kSmall && cpu_bf16_support().available) {
    at::mm_out(out, a, b);
  } else {
    out.copy_(at::mm(a.to(at::kFloat), b.to(at::kFloat)));
  }
}

at::Tensor bf16_mm(const at::Tensor& a, const at::Tensor& b) {
  auto out = at::empty({a.size(0), b.size(1)}, a.options());
  bf16_mm_out(out, a, b);
  return out;
}

// Patches of n images starting at x into col ([n * P, Q], float or bf16).
void im2col_images(const cpu::ConvShape& shape, const float* x, int64_t n, const at::Tensor& col) {
  const int64_t image = shape.channels * shape.height * shape.width;
  const int64_t rows = shape.patches() * shape.patch_size();
  at::parallel_for(0, n, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b) {
      if (col.scalar_type() == at::kBFloat16) {
        cpu::im2col_bf16(shape, x + b * image, bits(col) + b * rows);
      } else {
        cpu::im2col(shape, x + b * image, col.data_ptr<float>() + b * rows);
      }
    }
  });
}

// grad_x of n images from their patch gradients grad_col ([n * P, Q]).
void col2im_images(const cpu::ConvShape& shape, const at::Tensor& grad_col, int64_t n,
                   float* grad_x) {
  const int64_t C = shape.channels, image = C * shape.height * shape.width;
  const int64_t rows = shape.patches() * shape.patch_size();
  at::parallel_for(0, n * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end;) {
      const int64_t b = i / C, c_begin = i % C, c_end = std::min(C, c_begin + end - i);
      if (grad_col.scalar_type() == at::kBFloat16) {
        cpu::col2im_bf16(shape, bits(grad_col) + b * rows, c_begin, c_end, grad_x + b * image);
      } else {
        cpu::col2im(shape, grad_col.data_ptr<float>() + b * rows, c_begin, c_end,
                    grad_x + b * image);
      }
      i += c_end - c_begin;
    }
  });
}

// y[begin, begin + n) from the GEMM's rows: product [n * P, O] -> [n, O, P].
void store_rows(const at::Tensor& product, int64_t begin, int64_t n, at::Tensor& y) {
  const int64_t O = y.size(1), P = product.size(0) / n;
  y.narrow(0, begin, n).view({n, O, P}).copy_(product.view({n, P, O}).transpose(1, 2));
}

// grad [B, O, OH, OW] of images [begin, begin + n) as the GEMMs' rows [n * P, O].
void load_rows(const at::Tensor& grad, int64_t begin, int64_t n, at::Tensor& rows) {
  const int64_t O = grad.size(1), P = rows.size(0) / n;
  rows.view({n, P, O}).copy_(grad.narrow(0, begin, n).reshape({n, O, P}).transpose(1, 2));
}

// fp32: images per group: a patch matrix of at most 48 MB (16 images of the
// paper's primary capsules: 36 rows of 20736 floats each; conv1's whole
// batch), and at least 512 rows, enough for sgemm to run at full speed.
int64_t fp32_group(const cpu::ConvShape& shape, int64_t B) {
  constexpr int64_t kBytes = 48 << 20;
  const int64_t P = shape.patches(), row_bytes = shape.patch_size() * 4;
  const int64_t n = std::max((512 + P - 1) / P, kBytes / (P * row_bytes));
  return std::clamp<int64_t>(n, 1, B);
}

at::Tensor im2col_forward(const at::Tensor& x, const cpu::ConvShape& shape,
                          const at::Tensor& weight_rows, const at::Tensor& bias) {
  const int64_t B = x.size(0), O = weight_rows.size(0), P = shape.patches(),
                Q = shape.patch_size();
  auto y = at::empty({B, O, shape.out_height(), shape.out_width()}, x.options());
  const int64_t group = fp32_group(shape, B);
  auto patches = at::empty({group * P, Q}, x.options());
  auto product = at::empty({group * P, O}, x.options());
  const int64_t image = shape.channels * shape.height * shape.width;
  for (int64_t begin = 0; begin < B; begin += group) {
    const int64_t n = std::min(group, B - begin);
    auto col = patches.narrow(0, 0, n * P);
    auto p = product.narrow(0, 0, n * P);
    im2col_images(shape, x.data_ptr<float>() + begin * image, n, col);
    at::mm_out(p, col, weight_rows.t());
    store_rows(p, begin, n, y);
  }
  return y.add_(bias.view({1, O, 1, 1}));
}

struct Im2colConv : torch::autograd::Function<Im2colConv> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in,
                            const at::Tensor& weight, const at::Tensor& bias, int64_t stride,
                            bool onednn_forward) {
    auto x = x_in.contiguous();
    const auto shape = conv_shape(x, weight, stride);
    auto weight_rows = weight.contiguous().view({weight.size(0), shape.patch_size()});
    ctx->save_for_backward({x, weight_rows});
    ctx->saved_data["shape"] = to_vector(shape);
    return onednn_forward ? at::conv2d(x, weight, bias, stride)
                          : im2col_forward(x, shape, weight_rows, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight_rows = saved[1];
    const auto shape = from_vector(ctx->saved_data["shape"].toIntVector());
    const auto grad = grad_outputs[0].contiguous();
    const int64_t B = grad.size(0), O = grad.size(1), P = shape.patches(),
                  Q = shape.patch_size();
    const int64_t image = shape.channels * shape.height * shape.width;
    const bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    at::Tensor grad_x, grad_w;
    if (want_x) grad_x = at::empty_like(x);
    if (want_w) grad_w = at::zeros_like(weight_rows);
    const int64_t group = fp32_group(shape, B);
    auto patches = at::empty({group * P, Q}, x.options());
    auto rows_buffer = at::empty({group * P, O}, x.options());
    for (int64_t begin = 0; begin < B && (want_x || want_w); begin += group) {
      const int64_t n = std::min(group, B - begin);
      auto col = patches.narrow(0, 0, n * P);
      auto rows = rows_buffer.narrow(0, 0, n * P);
      load_rows(grad, begin, n, rows);
      if (want_w) {
        // dW += dY^T col, on patches recomputed from x.
        im2col_images(shape, x.data_ptr<float>() + begin * image, n, col);
        grad_w.addmm_(rows.t(), col);
      }
      if (want_x) {
        at::mm_out(col, rows, weight_rows); // the patches' gradient, in col's place
        col2im_images(shape, col, n, grad_x.data_ptr<float>() + begin * image);
      }
    }
    at::Tensor grad_bias;
    if (ctx->needs_input_grad(2)) grad_bias = grad.sum({0, 2, 3});
    if (want_w) grad_w = grad_w.view({O, shape.channels, shape.kernel, shape.kernel});
    return {grad_x, grad_w, grad_bias, at::Tensor(), at::Tensor()};
  }
};

// bf16: one GEMM over the whole batch per product (grad_weight is rounded to
// bf16 once, not once per group), so training keeps every image's patches.
void bf16_forward_images(const at::Tensor& x, const cpu::ConvShape& shape,
                         const at::Tensor& weight_bf16, int64_t begin, int64_t n,
                         at::Tensor& col, at::Tensor& product, at::Tensor& y) {
  const int64_t image = shape.channels * shape.height * shape.width;
  im2col_images(shape, x.data_ptr<float>() + begin * image, n, col);
  bf16_mm_out(product, col, weight_bf16.t());
  store_rows(product, begin, n, y);
}

at::Tensor bf16_forward(const at::Tensor& x, const cpu::ConvShape& shape,
                        const at::Tensor& weight_bf16, const at::Tensor& bias, at::Tensor* col) {
  const int64_t B = x.size(0), O = weight_bf16.size(0), P = shape.patches(),
                Q = shape.patch_size();
  auto y = at::empty({B, O, shape.out_height(), shape.out_width()}, x.options());
  if (col) {
    // Training: every image's patches are kept for backward.
    *col = at::empty({B * P, Q}, x.options().dtype(at::kBFloat16));
    auto product = at::empty({B * P, O}, col->options());
    bf16_forward_images(x, shape, weight_bf16, 0, B, *col, product, y);
  } else {
    // Inference: 64 images at a time through one reused buffer.
    const int64_t chunk = std::min<int64_t>(B, 64);
    auto patches = at::empty({chunk * P, Q}, x.options().dtype(at::kBFloat16));
    auto product = at::empty({chunk * P, O}, patches.options());
    for (int64_t begin = 0; begin < B; begin += chunk) {
      const int64_t n = std::min(chunk, B - begin);
      auto c = patches.narrow(0, 0, n * P);
      auto p = product.narrow(0, 0, n * P);
      bf16_forward_images(x, shape, weight_bf16, begin, n, c, p, y);
    }
  }
  return y.add_(bias.view({1, O, 1, 1}));
}

struct Bf16Conv : torch::autograd::Function<Bf16Conv> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in,
                            const at::Tensor& weight, const at::Tensor& bias, int64_t stride) {
    auto x = x_in.contiguous();
    const auto shape = conv_shape(x, weight, stride);
    auto weight_bf16 = to_bf16(weight).view({weight.size(0), shape.patch_size()});
    at::Tensor col;
    auto y = bf16_forward(x, shape, weight_bf16, bias, &col);
    ctx->save_for_backward({col, weight_bf16});
    ctx->saved_data["shape"] = to_vector(shape);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &col = saved[0], &weight_bf16 = saved[1];
    const auto shape = from_vector(ctx->saved_data["shape"].toIntVector());
    const auto grad = grad_outputs[0].contiguous();
    const int64_t B = grad.size(0), O = grad.size(1), P = shape.patches();
    auto grad_rows = at::empty({B * P, O}, col.options()); // rounded to bf16
    load_rows(grad, 0, B, grad_rows);

    at::Tensor grad_x, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0)) {
      auto grad_col = bf16_mm(grad_rows, weight_bf16); // [B * P, Q]
      grad_x = at::empty({B, shape.channels, shape.height, shape.width}, grad.options());
      col2im_images(shape, grad_col, B, grad_x.data_ptr<float>());
    }
    if (ctx->needs_input_grad(1)) {
      grad_weight = bf16_mm(grad_rows.t(), col)
                        .to(at::kFloat)
                        .view({O, shape.channels, shape.kernel, shape.kernel});
    }
    if (ctx->needs_input_grad(2)) grad_bias = grad.sum({0, 2, 3});
    return {grad_x, grad_weight, grad_bias, at::Tensor()};
  }
};

// Winograd F(2x2, 5x5) on the four phases of a stride-2 9x9 convolution
// (cpu/winograd_kernel.h).
// U [36, O, 4C] from weight [O, C, 9, 9].
at::Tensor winograd_weights(const at::Tensor& weight_in) {
  const auto weight = weight_in.contiguous();
  const int64_t O = weight.size(0), C = weight.size(1);
  auto u = at::empty({36, O, 4 * C}, weight.options());
  at::parallel_for(0, O, 1, [&](int64_t first, int64_t last) {
    cpu::winograd_weights(weight.data_ptr<float>(), O, C, first, last, u.data_ptr<float>());
  });
  return u;
}

// grad_weight [O, C, 9, 9] from grad_u (the adjoint of winograd_weights).
at::Tensor winograd_weights_adjoint(const at::Tensor& grad_u, int64_t channels) {
  const int64_t O = grad_u.size(1);
  auto grad_weight = at::empty({O, channels, 9, 9}, grad_u.options());
  at::parallel_for(0, O, 1, [&](int64_t first, int64_t last) {
    cpu::winograd_weights_adjoint(grad_u.data_ptr<float>(), O, channels, first, last,
                                  grad_weight.data_ptr<float>());
  });
  return grad_weight;
}

// Images per group: transformed tiles V of about 48 MB (32 images of the
// paper's primary capsules, 1.3 MB each) and GEMMs at least 256 columns wide,
// in whole SIMD blocks of 16 images.
int64_t winograd_group(const cpu::WinogradShape& shape, int64_t B) {
  constexpr int64_t kBytes = 48 << 20;
  const int64_t T = shape.tiles(), image_bytes = 36 * shape.phase_channels() * T * 4;
  int64_t n = std::max((256 + T - 1) / T, kBytes / image_bytes);
  n = std::max<int64_t>(16, n / 16 * 16);
  return std::clamp<int64_t>(n, 1, B);
}

cpu::WinogradShape winograd_shape(const at::Tensor& x) {
  return {x.size(1), x.size(2), x.size(3)};
}

// conv2d_winograd's forward: y [B, O, OH, OW] from contiguous x and u.
at::Tensor winograd_forward(const at::Tensor& x, const at::Tensor& u, const at::Tensor& bias) {
  const auto shape = winograd_shape(x);
  const int64_t B = x.size(0), O = u.size(1), C4 = shape.phase_channels(), T = shape.tiles();
  const int64_t OH = shape.out_height(), OW = shape.out_width();
  auto y = at::empty({B, O, OH, OW}, x.options());
  const auto b = bias.contiguous();
  const int64_t group = winograd_group(shape, B);
  auto v_buffer = at::empty({36 * C4 * T * group}, x.options());
  auto m_buffer = at::empty({36 * O * T * group}, x.options());
  const int64_t image = shape.channels * shape.height * shape.width;
  for (int64_t begin = 0; begin < B; begin += group) {
    const int64_t n = std::min(group, B - begin);
    auto v = v_buffer.narrow(0, 0, 36 * C4 * T * n).view({36, C4, T * n});
    auto m = m_buffer.narrow(0, 0, 36 * O * T * n).view({36, O, T * n});
    const float* xs = x.data_ptr<float>() + begin * image;
    at::parallel_for(0, shape.channels, 1, [&](int64_t first, int64_t last) {
      cpu::winograd_input(shape, xs, n, 4 * first, 4 * last, v.data_ptr<float>());
    });
    at::bmm_out(m, u, v);
    float* ys = y.data_ptr<float>() + begin * O * OH * OW;
    at::parallel_for(0, O, 1, [&](int64_t first, int64_t last) {
      cpu::winograd_output(shape, m.data_ptr<float>(), n, O, first, last, b.data_ptr<float>(), ys);
    });
  }
  return y;
}

struct WinogradConv : torch::autograd::Function<WinogradConv> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in,
                            const at::Tensor& weight, const at::Tensor& bias) {
    auto x = x_in.contiguous();
    auto u = winograd_weights(weight);
    ctx->save_for_backward({x, u});
    return winograd_forward(x, u, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &u = saved[1];
    const auto shape = winograd_shape(x);
    const auto grad = grad_outputs[0].contiguous();
    const int64_t B = grad.size(0), O = grad.size(1), C4 = shape.phase_channels(),
                  T = shape.tiles(), OH = shape.out_height(), OW = shape.out_width();
    const int64_t image = shape.channels * shape.height * shape.width;
    const bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    at::Tensor grad_x, grad_u;
    if (want_x) grad_x = at::empty_like(x);
    if (want_w) grad_u = at::zeros_like(u);
    const int64_t group = winograd_group(shape, B);
    auto v_buffer = at::empty({36 * C4 * T * group}, x.options());
    auto m_buffer = at::empty({36 * O * T * group}, x.options());
    const auto u_t = u.transpose(1, 2).contiguous(); // [36, 4C, O]: sgemm's faster layout
    for (int64_t begin = 0; begin < B && (want_x || want_w); begin += group) {
      const int64_t n = std::min(group, B - begin);
      auto v = v_buffer.narrow(0, 0, 36 * C4 * T * n).view({36, C4, T * n});
      auto m = m_buffer.narrow(0, 0, 36 * O * T * n).view({36, O, T * n});
      const float* gs = grad.data_ptr<float>() + begin * O * OH * OW;
      at::parallel_for(0, O, 1, [&](int64_t first, int64_t last) {
        cpu::winograd_output_adjoint(shape, gs, n, O, first, last, m.data_ptr<float>());
      });
      if (want_w) {
        // dU += dM V^T, on tiles transformed again from x.
        const float* xs = x.data_ptr<float>() + begin * image;
        at::parallel_for(0, shape.channels, 1, [&](int64_t first, int64_t last) {
          cpu::winograd_input(shape, xs, n, 4 * first, 4 * last, v.data_ptr<float>());
        });
        grad_u.baddbmm_(m, v.transpose(1, 2));
      }
      if (want_x) {
        at::bmm_out(v, u_t, m); // the tiles' gradient, in v's place
        float* gx = grad_x.data_ptr<float>() + begin * image;
        at::parallel_for(0, shape.channels, 1, [&](int64_t first, int64_t last) {
          cpu::winograd_input_adjoint(shape, v.data_ptr<float>(), n, 4 * first, 4 * last, gx);
        });
      }
    }
    at::Tensor grad_weight, grad_bias;
    if (want_w) grad_weight = winograd_weights_adjoint(grad_u, shape.channels);
    if (ctx->needs_input_grad(2)) grad_bias = grad.sum({0, 2, 3});
    return {grad_x, grad_weight, grad_bias};
  }
};

} // namespace

bool winograd_covers(const at::Tensor& x, const at::Tensor& weight, int64_t stride) {
  return x.dim() == 4 && weight.dim() == 4 && weight.size(2) == weight.size(3) &&
         cpu::winograd_covers(x.size(2), x.size(3), weight.size(2), stride);
}

bool winograd_covers(int64_t height, int64_t width, int64_t kernel, int64_t stride) {
  return cpu::winograd_covers(height, width, kernel, stride);
}

at::Tensor conv2d_winograd(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                           int64_t stride) {
  check_conv_args(x, weight, bias, stride, "conv2d_winograd");
  TORCH_CHECK(winograd_covers(x, weight, stride),
              "conv2d_winograd computes stride-2 9x9 convolutions of even sides with an output "
              "of even sides, got input ", x.sizes(), ", weight ", weight.sizes(), ", stride ",
              stride);
  if (!needs_grad(x, weight, bias)) {
    return winograd_forward(x.contiguous(), winograd_weights(weight), bias);
  }
  return WinogradConv::apply(x, weight, bias);
}

at::Tensor conv2d_im2col(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                         int64_t stride, bool onednn_forward) {
  check_conv_args(x, weight, bias, stride, "conv2d_im2col");
  if (!needs_grad(x, weight, bias)) {
    if (onednn_forward) return at::conv2d(x, weight, bias, stride);
    auto xc = x.contiguous();
    const auto shape = conv_shape(xc, weight, stride);
    return im2col_forward(xc, shape, weight.contiguous().view({weight.size(0), -1}), bias);
  }
  return Im2colConv::apply(x, weight, bias, stride, onednn_forward);
}

at::Tensor conv2d_fp32(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       int64_t stride, ConvAlgo algo) {
  const bool cpu_fp32 = x.device().is_cpu() && x.scalar_type() == at::kFloat;
  const bool covered = cpu_fp32 && winograd_covers(x, weight, stride);
  const bool backward = needs_grad(x, weight, bias);
  const auto chosen = conv_algo_for(algo, x.size(1), covered, backward);
  if (cpu_fp32 && chosen == ConvAlgo::kWinograd) return conv2d_winograd(x, weight, bias, stride);
  if (cpu_fp32 && chosen != ConvAlgo::kOneDnn) {
    return conv2d_im2col(x, weight, bias, stride, /*onednn_forward=*/chosen == ConvAlgo::kMixed);
  }
  return at::conv2d(x, weight, bias, stride);
}

at::Tensor conv2d_bf16(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       int64_t stride) {
  check_conv_args(x, weight, bias, stride, "conv2d_bf16");
  if (!needs_grad(x, weight, bias)) {
    auto xc = x.contiguous();
    const auto shape = conv_shape(xc, weight, stride);
    return bf16_forward(xc, shape, to_bf16(weight).view({weight.size(0), shape.patch_size()}),
                        bias, nullptr);
  }
  return Bf16Conv::apply(x, weight, bias, stride);
}

at::Tensor conv2d_in(Precision precision, const at::Tensor& x, const at::Tensor& weight,
                     const at::Tensor& bias, int64_t stride, ConvAlgo algo) {
  if (precision == Precision::kFp32) return conv2d_fp32(x, weight, bias, stride, algo);
  if (x.device().is_cpu()) return conv2d_bf16(x, weight, bias, stride);
  return at::conv2d(x.to(at::kBFloat16), weight.to(at::kBFloat16), bias.to(at::kBFloat16), stride)
      .to(at::kFloat);
}

} // namespace capsnet
