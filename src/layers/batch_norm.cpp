#include "capsnet/layers/batch_norm.h"

#include <c10/util/Exception.h>
#include <torch/csrc/autograd/generated/variable_factories.h>

#include <algorithm>

namespace capsnet {

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
