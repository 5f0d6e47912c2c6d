// The `capsnet` operator library: dynamic routing (fused), the two squashes
// and self-attention routing, registered with PyTorch's dispatcher. C++ calls
// them through the functions below; Python through torch.ops.capsnet once
// libcapsnet_ops.so is loaded (python/capsnet). One dispatch point for both.
//
//   dynamic_routing        CPU and CUDA kernels (no autograd: inference), and
//                          an Autograd kernel whose backward is the fused one
//   _dynamic_routing_forward / _dynamic_routing_backward
//                          the fused kernels themselves, CPU and CUDA
//   squash, efficient_squash, attention_routing
//                          CompositeImplicitAutograd: ATen ops, which every
//                          backend runs and autograd differentiates

#include "capsnet/ops/attention_routing.h"
#include "capsnet/ops/fused_routing.h"
#include "capsnet/ops/squash.h"
#include "op_kernels.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>
#include <torch/version.h>

#include <string>

// The LibTorch this library was built against, as a marker that
// python/capsnet/_ops.py reads from the file before loading it: a library
// built against another version is refused with both named, rather than
// failing in the dynamic linker or crashing on a changed ABI.
extern "C" __attribute__((visibility("default"), used)) const char capsnet_ops_libtorch_version[] =
    "capsnet-ops-built-against-libtorch:" TORCH_VERSION ";";

namespace capsnet {

namespace {

bool routes_to_parents(c10::string_view softmax) {
  const std::string name(softmax.data(), softmax.size());
  bool known = false, parents = false;
  for (const auto& [value, known_name] : EnumNames<RoutingSoftmax>::values()) {
    if (name == known_name) known = true, parents = value == RoutingSoftmax::kParents;
  }
  TORCH_CHECK_VALUE(known, "unknown routing softmax '", name, "': expected ",
                    enum_choices<RoutingSoftmax>());
  return parents;
}

auto& forward_op() {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("capsnet::_dynamic_routing_forward", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                           int64_t, bool)>();
  return op;
}

auto& backward_op() {
  static auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("capsnet::_dynamic_routing_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const at::Tensor&, const at::Tensor&, int64_t, bool, bool)>();
  return op;
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Autograd sees one node per routing: forward keeps u, W and each
// iteration's c, s and v; backward is the fused kernel, which recomputes u_hat.
struct DynamicRoutingFunction : torch::autograd::Function<DynamicRoutingFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& u, const at::Tensor& weight,
                            const at::Tensor& bias_or_empty, int64_t iterations, bool parents) {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    const bool has_bias = bias_or_empty.numel() > 0;
    const auto bias = has_bias ? c10::optional<at::Tensor>(bias_or_empty) : c10::nullopt;
    auto [v, coupling, s, v_all] = forward_op().call(u, weight, bias, iterations, parents);
    ctx->save_for_backward({u, weight, coupling, s, v_all});
    ctx->saved_data["iterations"] = iterations;
    ctx->saved_data["parents"] = parents;
    ctx->saved_data["has_bias"] = has_bias;
    return v;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const bool has_bias = ctx->saved_data["has_bias"].toBool();
    auto [grad_u, grad_weight, grad_bias] =
        backward_op().call(grad_outputs[0], saved[0], saved[1], saved[2], saved[3], saved[4],
                           ctx->saved_data["iterations"].toInt(),
                           ctx->saved_data["parents"].toBool(), has_bias);
    return {grad_u, grad_weight, has_bias ? grad_bias : at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor dynamic_routing_autograd(const at::Tensor& u, const at::Tensor& weight,
                                    const c10::optional<at::Tensor>& bias, int64_t iterations,
                                    c10::string_view softmax) {
  const bool parents = routes_to_parents(softmax);
  check_routing_arguments(u, weight, bias, iterations);
  // Autograd functions take defined tensors only: an empty bias stands for none.
  const auto bias_or_empty =
      bias.has_value() && bias->defined() ? *bias : at::empty({0}, weight.options());
  return DynamicRoutingFunction::apply(u, weight, bias_or_empty, iterations, parents);
}

// Below autograd (inference mode, or tensors without autograd): forward only.
at::Tensor dynamic_routing_kernel(const at::Tensor& u, const at::Tensor& weight,
                                  const c10::optional<at::Tensor>& bias, int64_t iterations,
                                  c10::string_view softmax) {
  return std::get<0>(fused_routing_forward(u, weight, bias, iterations, routes_to_parents(softmax)));
}

} // namespace

TORCH_LIBRARY(capsnet, m) {
  m.def("dynamic_routing(Tensor u, Tensor weight, Tensor? bias=None, int iterations=3, "
        "str softmax=\"parents\") -> Tensor");
  m.def("_dynamic_routing_forward(Tensor u, Tensor weight, Tensor? bias, int iterations, "
        "bool parents) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("_dynamic_routing_backward(Tensor grad_v, Tensor u, Tensor weight, Tensor coupling, "
        "Tensor s, Tensor v, int iterations, bool parents, bool has_bias) "
        "-> (Tensor, Tensor, Tensor)");
  m.def("squash(Tensor s, int dim=-1, float eps=1e-08) -> Tensor");
  m.def("efficient_squash(Tensor s, int dim=-1, float eps=1e-20) -> Tensor");
  m.def("attention_routing(Tensor u_hat, Tensor? bias=None) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(capsnet, CPU, m) {
  m.impl("dynamic_routing", dynamic_routing_kernel);
  m.impl("_dynamic_routing_forward", fused_routing_forward);
  m.impl("_dynamic_routing_backward", fused_routing_backward);
}

#ifdef CAPSNET_WITH_CUDA
TORCH_LIBRARY_IMPL(capsnet, CUDA, m) {
  m.impl("dynamic_routing", dynamic_routing_kernel);
  m.impl("_dynamic_routing_forward", fused_routing_forward);
  m.impl("_dynamic_routing_backward", fused_routing_backward);
}
#endif

TORCH_LIBRARY_IMPL(capsnet, Autograd, m) {
  m.impl("dynamic_routing", dynamic_routing_autograd);
}

TORCH_LIBRARY_IMPL(capsnet, CompositeImplicitAutograd, m) {
  m.impl("squash", squash_composite);
  m.impl("efficient_squash", efficient_squash_composite);
  m.impl("attention_routing", attention_routing_composite);
}

// The C++ entry points: the registered operators, through the dispatcher.

at::Tensor fused_dynamic_routing(const at::Tensor& u, const at::Tensor& weight,
                                 const at::Tensor& bias, int64_t iterations,
                                 RoutingSoftmax softmax) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("capsnet::dynamic_routing", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                         const c10::optional<at::Tensor>&, int64_t,
                                         c10::string_view)>();
  const auto name = enum_name(softmax);
  return op.call(u, weight, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt,
                 iterations, name);
}

at::Tensor squash(const at::Tensor& s, int64_t dim, double eps) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("capsnet::squash", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t, double)>();
  return op.call(s, dim, eps);
}

at::Tensor efficient_squash(const at::Tensor& s, int64_t dim, double eps) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("capsnet::efficient_squash", "")
                       .typed<at::Tensor(const at::Tensor&, int64_t, double)>();
  return op.call(s, dim, eps);
}

at::Tensor attention_routing(const at::Tensor& u_hat, const at::Tensor& bias,
                             at::Tensor* coupling) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("capsnet::attention_routing", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const c10::optional<at::Tensor>&)>();
  auto [v, c] =
      op.call(u_hat, bias.defined() ? c10::optional<at::Tensor>(bias) : c10::nullopt);
  if (coupling) *coupling = c;
  return v;
}

} // namespace capsnet
