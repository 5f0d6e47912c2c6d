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
  const auto y = conv2d_in(options.precision(), x, conv->weight, conv->bias, options.stride(),
                           options.conv_algo());
  const auto dim = options.capsule_dim();
  auto caps = y.view({y.size(0), dim, -1}).transpose(1, 2); // [B, T * H * W, D]
  return squash(caps);
}

} // namespace capsnet
