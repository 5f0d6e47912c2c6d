#pragma once

// The kernels behind the operators that src/ops/library.cpp registers under
// the `capsnet` namespace (torch.ops.capsnet.* in Python). C++ code calls the
// public functions of include/capsnet/ops/, which go through the same
// registered operators.

#include <ATen/ATen.h>

#include <tuple>

namespace capsnet {

/// Eq. 1 of 2017, in ATen ops (autograd through them).
at::Tensor squash_composite(const at::Tensor& s, int64_t dim, double eps);

/// Efficient-CapsNet's squash, in ATen ops.
at::Tensor efficient_squash_composite(const at::Tensor& s, int64_t dim, double eps);

/// Self-attention routing in ATen ops: (v, coupling before the priors).
std::tuple<at::Tensor, at::Tensor> attention_routing_composite(
    const at::Tensor& u_hat, const c10::optional<at::Tensor>& bias);

/// Throws, naming the argument, unless (u, weight, bias, iterations) suit the
/// fused routing op on this build.
void check_routing_arguments(const at::Tensor& u, const at::Tensor& weight,
                             const c10::optional<at::Tensor>& bias, int64_t iterations);

/// The fused routing's forward on the CPU or a GPU: (v of the last
/// iteration [B, J, M], coupling [B, r, J, I] on the CPU and [B, r, I, J] on a
/// GPU, s and v of every iteration [B, r, J, M]); the last three are what
/// backward needs, in the layout its kernels read.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fused_routing_forward(
    const at::Tensor& u, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
    int64_t iterations, bool parents);

/// Its backward: (grad u, grad weight, grad bias; an empty tensor without a
/// bias). u_hat is recomputed from u and weight.
std::tuple<at::Tensor, at::Tensor, at::Tensor> fused_routing_backward(
    const at::Tensor& grad_v, const at::Tensor& u, const at::Tensor& weight,
    const at::Tensor& coupling, const at::Tensor& s, const at::Tensor& v, int64_t iterations,
    bool parents, bool has_bias);

} // namespace capsnet
