#include "capsnet/layers/digit_capsules.h"

#include <c10/util/Exception.h>
#include <torch/nn/init.h>

namespace capsnet {

DigitCapsulesImpl::DigitCapsulesImpl(const DigitCapsulesOptions& options_) : options(options_) {
  reset();
}

void DigitCapsulesImpl::reset() {
  TORCH_CHECK(options.routing_iterations() >= 1, "expected at least one routing iteration, got ",
              options.routing_iterations());
  TORCH_CHECK(options.init_std() > 0, "expected a positive W init std, got ", options.init_std());
  weight = register_parameter("weight", at::empty({options.in_capsules(), options.out_capsules(),
                                                   options.in_dim(), options.out_dim()}));
  torch::nn::init::normal_(weight, 0.0, options.init_std());
  if (options.bias()) {
    bias = register_parameter("bias", at::zeros({options.out_capsules(), options.out_dim()}));
  }
}

at::Tensor DigitCapsulesImpl::forward(const at::Tensor& input) {
  const auto u = options.input_scale() == 1.0 ? input : input * options.input_scale();
  const bool fused_kernel = u.device().is_cpu()
                                ? (u.scalar_type() == at::kFloat || u.scalar_type() == at::kDouble)
                                : (fused_routing_supports(u.device()) && u.scalar_type() == at::kFloat);
  if (options.impl() == RoutingImpl::kFused && fused_kernel) {
    return fused_dynamic_routing(u, weight, bias, options.routing_iterations(), options.softmax());
  }
  return dynamic_routing(prediction_vectors(u, weight), options.routing_iterations(),
                         options.softmax(), bias);
}

} // namespace capsnet
