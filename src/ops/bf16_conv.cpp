#include "capsnet/ops/bf16_conv.h"

#include "cpu/im2col_kernel.h"

#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cpuid.h>
#include <cstdlib>
#include <ostream>
#include <stdexcept>

namespace capsnet {

std::string to_string(Precision precision) {
  return precision == Precision::kBf16 ? "bf16" : "fp32";
}

Precision precision_from_string(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  throw std::invalid_argument("unknown precision '" + name + "': expected 'fp32' or 'bf16'");
}

Bf16Support cpu_bf16_support() {
  Bf16Support support;
  if (const char* off = std::getenv("CAPSNET_NO_BF16"); off && std::string(off) == "1") {
    support.why_not = "CAPSNET_NO_BF16=1 is set";
    return support;
  }
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27))) {
    support.why_not = "the CPU or OS does not expose XSAVE state (no OSXSAVE)";
    return support;
  }
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool os_avx512 = (xcr0_lo & 0xe6u) == 0xe6u; // SSE, AVX, opmask, ZMM state
  unsigned leaf7_edx = 0, leaf7_1_eax = 0;
  if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) leaf7_edx = edx;
  if (__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) leaf7_1_eax = eax;
  const bool amx_bf16 = leaf7_edx & (1u << 22);
  const bool avx512_bf16 = leaf7_1_eax & (1u << 5);
  if (!os_avx512) {
    support.why_not = "the OS has not enabled AVX-512 state";
  } else if (amx_bf16) {
    support.available = true;
    support.isa = "AMX-BF16";
  } else if (avx512_bf16) {
    support.available = true;
    support.isa = "AVX512-BF16";
  } else {
    support.why_not = "the CPU has neither AMX-BF16 nor AVX512-BF16";
  }
  return support;
}

Precision usable_precision(Precision requested, std::ostream& warnings,
                           const c10::Device& device) {
  if (requested != Precision::kBf16 || !device.is_cpu()) return requested;
  const auto support = cpu_bf16_support();
  if (support.available) return requested;
  warnings << "capsnet: bf16 needs a CPU with AMX-BF16 or AVX512-BF16, but " << support.why_not
           << "; running in fp32 instead" << std::endl;
  return Precision::kFp32;
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

cpu::ConvShape conv_shape(const at::Tensor& x, const at::Tensor& weight, int64_t stride) {
  return {x.size(1), x.size(2), x.size(3), weight.size(2), stride};
}

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

// Patches of images [begin, begin + n) of x into col ([n * P, Q]), then
// y[begin, begin + n) = col W^T (the caller adds the bias). `product` is
// [n * P, O] scratch.
void forward_images(const at::Tensor& x, const cpu::ConvShape& shape,
                    const at::Tensor& weight_bf16, int64_t begin, int64_t n, at::Tensor& col,
                    at::Tensor& product, at::Tensor& y) {
  const int64_t O = weight_bf16.size(0);
  const int64_t P = shape.out_height() * shape.out_width(), Q = shape.patch_size();
  const int64_t image = shape.channels * shape.height * shape.width;
  const float* x_ptr = x.data_ptr<float>() + begin * image;
  uint16_t* col_ptr = bits(col);
  at::parallel_for(0, n, 1, [&](int64_t first, int64_t last) {
    for (int64_t b = first; b < last; ++b)
      cpu::im2col_bf16(shape, x_ptr + b * image, col_ptr + b * P * Q);
  });
  at::mm_out(product, col, weight_bf16.t());
  y.narrow(0, begin, n).view({n, O, P}).copy_(product.view({n, P, O}).transpose(1, 2));
}

at::Tensor forward_all(const at::Tensor& x, const cpu::ConvShape& shape,
                       const at::Tensor& weight_bf16, const at::Tensor& bias, at::Tensor* col) {
  const int64_t B = x.size(0), O = weight_bf16.size(0);
  const int64_t P = shape.out_height() * shape.out_width(), Q = shape.patch_size();
  auto y = at::empty({B, O, shape.out_height(), shape.out_width()}, x.options());
  if (col) {
    // Training: every image's patches are kept for backward.
    *col = at::empty({B * P, Q}, x.options().dtype(at::kBFloat16));
    auto product = at::empty({B * P, O}, col->options());
    forward_images(x, shape, weight_bf16, 0, B, *col, product, y);
  } else {
    // Inference: 64 images at a time through one reused buffer.
    const int64_t chunk = std::min<int64_t>(B, 64);
    auto patches = at::empty({chunk * P, Q}, x.options().dtype(at::kBFloat16));
    auto product = at::empty({chunk * P, O}, patches.options());
    for (int64_t begin = 0; begin < B; begin += chunk) {
      const int64_t n = std::min(chunk, B - begin);
      auto c = patches.narrow(0, 0, n * P);
      auto p = product.narrow(0, 0, n * P);
      forward_images(x, shape, weight_bf16, begin, n, c, p, y);
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
    auto y = forward_all(x, shape, weight_bf16, bias, &col);
    ctx->save_for_backward({col, weight_bf16});
    ctx->saved_data["shape"] = std::vector<int64_t>{shape.channels, shape.height, shape.width,
                                                    shape.kernel, shape.stride};
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &col = saved[0], &weight_bf16 = saved[1];
    const auto dims = ctx->saved_data["shape"].toIntVector();
    const cpu::ConvShape shape{dims[0], dims[1], dims[2], dims[3], dims[4]};
    const auto& grad = grad_outputs[0];
    const int64_t B = grad.size(0), O = grad.size(1);
    const int64_t P = shape.out_height() * shape.out_width(), Q = shape.patch_size();
    // [B, O, P] -> [B * P, O] in bf16, the GEMMs' layout.
    auto grad_rows = at::empty({B, P, O}, col.options());
    grad_rows.copy_(grad.reshape({B, O, P}).transpose(1, 2));
    grad_rows = grad_rows.view({B * P, O});

    at::Tensor grad_x, grad_weight, grad_bias;
    if (ctx->needs_input_grad(0)) {
      auto grad_col = at::mm(grad_rows, weight_bf16); // [B * P, Q]
      grad_x = at::empty({B, shape.channels, shape.height, shape.width}, grad.options());
      const uint16_t* gc = bits(grad_col);
      float* gx = grad_x.data_ptr<float>();
      const int64_t C = shape.channels, image = C * shape.height * shape.width;
      at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end;) {
          const int64_t b = i / C, c_begin = i % C, c_end = std::min(C, c_begin + end - i);
          cpu::col2im_bf16(shape, gc + b * P * Q, c_begin, c_end, gx + b * image);
          i += c_end - c_begin;
        }
      });
    }
    if (ctx->needs_input_grad(1)) {
      grad_weight = at::mm(grad_rows.t(), col)
                        .to(at::kFloat)
                        .view({O, shape.channels, shape.kernel, shape.kernel});
    }
    if (ctx->needs_input_grad(2)) grad_bias = grad.sum({0, 2, 3});
    return {grad_x, grad_weight, grad_bias, at::Tensor()};
  }
};

} // namespace

at::Tensor conv2d_bf16(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                       int64_t stride) {
  TORCH_CHECK(x.dim() == 4, "expected x of shape [B, C, H, W], got ", x.sizes());
  TORCH_CHECK(weight.dim() == 4 && weight.size(1) == x.size(1) && weight.size(2) == weight.size(3),
              "expected weight of shape [O, ", x.size(1), ", K, K], got ", weight.sizes());
  TORCH_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "expected bias of shape [",
              weight.size(0), "], got ", bias.sizes());
  TORCH_CHECK(stride >= 1, "expected a positive stride, got ", stride);
  TORCH_CHECK(x.size(2) >= weight.size(2) && x.size(3) >= weight.size(3), "input ", x.sizes(),
              " is smaller than the kernel ", weight.sizes());
  TORCH_CHECK(x.device().is_cpu() && weight.device().is_cpu() && bias.device().is_cpu(),
              "conv2d_bf16 runs on the CPU");
  TORCH_CHECK(x.scalar_type() == at::kFloat && weight.scalar_type() == at::kFloat &&
                  bias.scalar_type() == at::kFloat,
              "conv2d_bf16 takes float tensors, got ", x.scalar_type(), ", ",
              weight.scalar_type(), ", ", bias.scalar_type());
  const bool needs_grad = at::GradMode::is_enabled() &&
                          (x.requires_grad() || weight.requires_grad() || bias.requires_grad());
  if (!needs_grad) {
    auto xc = x.contiguous();
    const auto shape = conv_shape(xc, weight, stride);
    return forward_all(xc, shape, to_bf16(weight).view({weight.size(0), shape.patch_size()}), bias,
                       nullptr);
  }
  return Bf16Conv::apply(x, weight, bias, stride);
}

} // namespace capsnet
