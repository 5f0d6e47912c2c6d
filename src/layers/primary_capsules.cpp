#include "capsnet/layers/primary_capsules.h"

#include "capsnet/ops/squash.h"

namespace capsnet {

PrimaryCapsulesImpl::PrimaryCapsulesImpl(const PrimaryCapsulesOptions& options_)
    : options(options_),
      conv(torch::nn::Conv2dOptions(options.in_channels(),
                                    options.num_types() * options.capsule_dim(),
                                    options.kernel_size())
               .stride(options.stride())) {
  register_module("conv", conv);
}

at::Tensor PrimaryCapsulesImpl::forward(const at::Tensor& x) {
  // [B, D * T, H, W]
  at::Tensor y;
  if (options.precision() == Precision::kBf16 && x.device().is_cpu()) {
    y = conv2d_bf16(x, conv->weight, conv->bias, options.stride());
  } else if (options.precision() == Precision::kBf16) {
    // GPUs: cuDNN's bf16 convolution on bf16 copies of fp32 master weights.
    y = at::conv2d(x.to(at::kBFloat16), conv->weight.to(at::kBFloat16),
                   conv->bias.to(at::kBFloat16), options.stride())
            .to(at::kFloat);
  } else {
    y = conv2d_fp32(x, conv->weight, conv->bias, options.stride(), options.conv_algo());
  }
  const auto dim = options.capsule_dim();
  auto caps = y.view({y.size(0), dim, -1}).transpose(1, 2); // [B, T * H * W, D]
  return squash(caps);
}

} // namespace capsnet
