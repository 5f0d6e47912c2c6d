#include "capsnet/layers/batch_norm.h"

#include "../ops/cpu/batch_norm_kernel.h"

#include <ATen/Parallel.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include <algorithm>
#include <type_traits>
#include <vector>

namespace capsnet {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

cpu::ChannelShape channel_shape(const at::Tensor& x) {
  return {x.size(0), x.size(1), x.size(2) * x.size(3)};
}

// A tensor's data as the kernels take it: bfloat16 as uint16_t.
template <typename T>
T* data(const at::Tensor& t) {
  if constexpr (std::is_same_v<T, uint16_t>) {
    TORCH_INTERNAL_ASSERT(t.scalar_type() == at::kBFloat16);
    return reinterpret_cast<uint16_t*>(t.data_ptr<at::BFloat16>());
  } else {
    return t.data_ptr<T>();
  }
}

// Calls f(X(), Y()) with the storage types of x and y: float and float, double
// and double, bfloat16 and bfloat16, or bfloat16 and float.
template <typename F>
void dispatch_storage(at::ScalarType x, at::ScalarType y, const F& f) {
  if (x == at::kFloat && y == at::kFloat) return f(float(), float());
  if (x == at::kDouble && y == at::kDouble) return f(double(), double());
  if (x == at::kBFloat16 && y == at::kBFloat16) return f(uint16_t(), uint16_t());
  if (x == at::kBFloat16 && y == at::kFloat) return f(uint16_t(), float());
  TORCH_INTERNAL_ASSERT(false, "no fused relu + batch norm from ", x, " to ", y);
}

// Whether x is [B, C, H, W] stored channels last (as oneDNN's bf16
// convolutions take and give it) rather than planar.
bool is_channels_last(const at::Tensor& x) {
  return x.size(1) > 1 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast);
}

// Per-channel sums of the blocks' partial sums part [blocks, C], block by block in double.
std::vector<double> sum_blocks(const at::Tensor& part) {
  const int64_t blocks = part.size(0), C = part.size(1);
  const float* p = part.data_ptr<float>();
  std::vector<double> sum(C, 0.0);
  for (int64_t b = 0; b < blocks; ++b) {
    for (int64_t c = 0; c < C; ++c) sum[c] += p[b * C + c];
  }
  return sum;
}

// Training forward of channels-last x into y: stats [3, C] = mean, var, invstd.
template <typename X, typename Y>
void channels_last_forward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& b,
                           double eps, at::Tensor& stats, at::Tensor& y) {
  const int64_t C = x.size(1);
  const cpu::RowsShape shape{x.numel() / C, C};
  const double n = static_cast<double>(shape.rows);
  auto part = at::empty({shape.blocks(), C}, w.options());
  auto coefficients = at::empty({2, C}, w.options()); // scale, shift
  float *s = stats.data_ptr<float>(), *scale = coefficients.data_ptr<float>(), *shift = scale + C;
  const float *weight = w.data_ptr<float>(), *bias = b.data_ptr<float>();
  // Each channel's mean of relu(x) into out, or with `mean`, of (relu(x) - mean)^2.
  const auto channel_means = [&](const float* mean, float* out) {
    at::parallel_for(0, shape.blocks(), 1, [&](int64_t begin, int64_t end) {
      cpu::nhwc_block_sums(shape, begin, end, data<X>(x), mean, part.data_ptr<float>());
    });
    const auto sums = sum_blocks(part);
    for (int64_t c = 0; c < C; ++c) out[c] = static_cast<float>(sums[c] / n);
  };
  channel_means(nullptr, s); // mean
  channel_means(s, s + C);   // biased variance
  for (int64_t c = 0; c < C; ++c) {
    const auto k = cpu::norm_coefficients(s[c], s[C + c], eps, weight[c], bias[c]);
    s[2 * C + c] = static_cast<float>(k.invstd);
    scale[c] = static_cast<float>(k.scale);
    shift[c] = static_cast<float>(k.shift);
  }
  at::parallel_for(0, shape.blocks(), 1, [&](int64_t begin, int64_t end) {
    cpu::nhwc_normalize(shape, begin, end, data<X>(x), scale, shift, data<Y>(y));
  });
}

// Backward of channels_last_forward: grad_x, grad_w, grad_b from grad_y.
template <typename X, typename Y>
void channels_last_backward(const at::Tensor& x, const at::Tensor& w, const at::Tensor& stats,
                            const at::Tensor& grad_y, at::Tensor& grad_x, at::Tensor& grad_w,
                            at::Tensor& grad_b) {
  const int64_t C = x.size(1);
  const cpu::RowsShape shape{x.numel() / C, C};
  const double n = static_cast<double>(shape.rows);
  auto part = at::empty({2, shape.blocks(), C}, w.options());
  const float* s = stats.data_ptr<float>();
  at::parallel_for(0, shape.blocks(), 1, [&](int64_t begin, int64_t end) {
    cpu::nhwc_block_gradient_sums(shape, begin, end, data<X>(x), data<Y>(grad_y), s,
                                  part[0].data_ptr<float>(), part[1].data_ptr<float>());
  });
  const auto sum_g = sum_blocks(part[0]), sum_gd = sum_blocks(part[1]);
  auto coefficients = at::empty({3, C}, w.options());
  float *a = coefficients.data_ptr<float>(), *d = a + C, *e = a + 2 * C;
  const float* weight = w.data_ptr<float>();
  float *gw = grad_w.data_ptr<float>(), *gb = grad_b.data_ptr<float>();
  for (int64_t c = 0; c < C; ++c) {
    gb[c] = static_cast<float>(sum_g[c]);
    gw[c] = static_cast<float>(sum_gd[c] * s[2 * C + c]);
    const auto k = cpu::grad_coefficients(weight[c], s[c], s[2 * C + c], sum_g[c], sum_gd[c], n);
    a[c] = static_cast<float>(k.a);
    d[c] = static_cast<float>(k.d);
    e[c] = static_cast<float>(k.e);
  }
  at::parallel_for(0, shape.blocks(), 1, [&](int64_t begin, int64_t end) {
    cpu::nhwc_grad_input(shape, begin, end, data<X>(x), data<Y>(grad_y), a, d, e, data<X>(grad_x));
  });
}

// BN(relu(x)) in training on the CPU, in two passes over each channel each way
// (LibTorch's relu, batch_norm and their backwards make about twice as many,
// over memory); saves x, not relu(x). Updates the running statistics. The
// output has dtype `out` (bf16 input: bf16 or float) and x's layout, planar
// or channels last (fp32 weights); the gradient has x's dtype and layout.
struct ReluBatchNorm : torch::autograd::Function<ReluBatchNorm> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& weight,
                            const at::Tensor& bias, at::Tensor running_mean, at::Tensor running_var,
                            double momentum, double eps, at::ScalarType out) {
    const bool last = is_channels_last(x_in) && weight.scalar_type() == at::kFloat;
    const auto x = last ? x_in : x_in.contiguous();
    const auto shape = channel_shape(x);
    auto y = at::empty_like(x, x.options().dtype(out));             // x's layout
    auto stats = at::empty({3, shape.channels}, weight.options()); // mean, var, invstd
    const auto w = weight.contiguous(), b = bias.contiguous();
    dispatch_storage(x.scalar_type(), out, [&](auto x_type, auto y_type) {
      using X = decltype(x_type);
      using Y = decltype(y_type);
      using T = std::conditional_t<std::is_same_v<X, double>, double, float>;
      if constexpr (std::is_same_v<T, float>) {
        if (last) return channels_last_forward<X, Y>(x, w, b, eps, stats, y);
      }
      T* s = stats.data_ptr<T>();
      at::parallel_for(0, shape.channels, 1, [&](int64_t begin, int64_t end) {
        cpu::relu_batch_norm_forward(shape, begin, end, data<X>(x), w.data_ptr<T>(),
                                     b.data_ptr<T>(), eps, s, s + shape.channels,
                                     s + 2 * shape.channels, data<Y>(y));
      });
    });
    const double n = static_cast<double>(shape.images * shape.plane);
    {
      at::NoGradGuard no_grad;
      running_mean.mul_(1 - momentum).add_(stats[0], momentum);
      running_var.mul_(1 - momentum).add_(stats[1] * (n / std::max(n - 1, 1.0)), momentum);
    }
    ctx->save_for_backward({x, w, stats});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &stats = saved[2];
    const bool last = is_channels_last(x);
    const auto grad_y = grad_outputs[0].contiguous(last ? at::MemoryFormat::ChannelsLast
                                                        : at::MemoryFormat::Contiguous);
    const auto shape = channel_shape(x);
    auto grad_x = at::empty_like(x); // x's layout
    auto grad_w = at::empty_like(w), grad_b = at::empty_like(w);
    dispatch_storage(x.scalar_type(), grad_y.scalar_type(), [&](auto x_type, auto y_type) {
      using X = decltype(x_type);
      using Y = decltype(y_type);
      using T = std::conditional_t<std::is_same_v<X, double>, double, float>;
      if constexpr (std::is_same_v<T, float>) {
        if (last) return channels_last_backward<X, Y>(x, w, stats, grad_y, grad_x, grad_w, grad_b);
      }
      const T* s = stats.data_ptr<T>();
      at::parallel_for(0, shape.channels, 1, [&](int64_t begin, int64_t end) {
        cpu::relu_batch_norm_backward(shape, begin, end, data<X>(x), w.data_ptr<T>(), s,
                                      s + 2 * shape.channels, data<Y>(grad_y), data<X>(grad_x),
                                      grad_w.data_ptr<T>(), grad_b.data_ptr<T>());
      });
    });
    return {grad_x,       grad_w,       grad_b,       at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

} // namespace

BatchNormImpl::BatchNormImpl(int64_t channels, double momentum_, double eps_)
    : momentum(momentum_), eps(eps_) {
  weight = register_parameter("weight", torch::ones({channels}));
  bias = register_parameter("bias", torch::zeros({channels}));
  running_mean = register_buffer("running_mean", torch::zeros({channels}));
  running_var = register_buffer("running_var", torch::ones({channels}));
}

at::Tensor BatchNormImpl::forward(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == weight.size(0), "expected [B, ", weight.size(0),
              ", H, W], got ", x.sizes());
  if (!is_training() || !reduce) {
    return at::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps,
                          /*cudnn_enabled=*/true);
  }
  // The global batch's moments from per-rank sums, differentiated through the sum.
  const int64_t C = x.size(1);
  const double local = static_cast<double>(x.numel() / C);
  auto sums = reduce(at::stack({x.sum({0, 2, 3}), x.pow(2).sum({0, 2, 3}),
                                at::full({C}, local, x.options())}));
  const auto count = sums[2];
  const auto mean = sums[0] / count;
  const auto var = sums[1] / count - mean.pow(2);
  {
    at::NoGradGuard no_grad;
    const auto n = count[0].item<double>();
    running_mean.mul_(1 - momentum).add_(mean.detach(), momentum);
    running_var.mul_(1 - momentum).add_(var.detach() * (n / std::max(n - 1, 1.0)), momentum);
  }
  const auto scale = weight / (var + eps).sqrt();
  return x * scale.view({1, C, 1, 1}) + (bias - mean * scale).view({1, C, 1, 1});
}

at::Tensor BatchNormImpl::forward_relu(const at::Tensor& x, at::ScalarType out) {
  const auto own = weight.scalar_type();
  const bool fused =
      is_training() && !reduce && x.device().is_cpu() && x.dim() == 4 && x.numel() > 0 &&
      (own == at::kFloat || own == at::kDouble) &&
      (x.scalar_type() == own ? out == own
                              : x.scalar_type() == at::kBFloat16 && own == at::kFloat &&
                                    (out == at::kBFloat16 || out == at::kFloat));
  if (!fused) return forward(at::relu(x).to(own)).to(out);
  TORCH_CHECK(x.size(1) == weight.size(0), "expected [B, ", weight.size(0), ", H, W], got ",
              x.sizes());
  return ReluBatchNorm::apply(x, weight, bias, running_mean, running_var, momentum, eps, out);
}

std::vector<BatchNormImpl*> batch_norms(torch::nn::Module& module) {
  std::vector<BatchNormImpl*> found;
  // Without itself: modules() of a module not held by a shared_ptr throws.
  if (auto* norm = dynamic_cast<BatchNormImpl*>(&module)) found.push_back(norm);
  for (const auto& child : module.modules(/*include_self=*/false)) {
    if (auto* norm = dynamic_cast<BatchNormImpl*>(child.get())) found.push_back(norm);
  }
  return found;
}

int64_t set_batch_norm_reduce(torch::nn::Module& module, const DifferentiableSum& reduce) {
  const auto found = batch_norms(module);
  for (auto* norm : found) norm->reduce = reduce;
  return static_cast<int64_t>(found.size());
}

} // namespace capsnet
