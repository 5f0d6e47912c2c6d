#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <functional>
#include <vector>

namespace capsnet {

/// A sum over the processes of a data-parallel run that autograd
/// differentiates (its backward sums the gradients the same way).
using DifferentiableSum = std::function<at::Tensor(const at::Tensor&)>;

/// Batch normalisation over [B, C, H, W] whose batch statistics can span the
/// processes of a data-parallel run: with `reduce` set (a sum over ranks that
/// autograd differentiates), the mean and variance are those of the global
/// batch, so that N ranks of B images compute what one process of N * B
/// does. Without it, at::batch_norm. Parameters weight and bias, buffers
/// running_mean, running_var (unbiased, as PyTorch keeps them).
struct BatchNormImpl : torch::nn::Module {
  /// `channels` C; weight 1, bias 0, running_mean 0 and running_var 1 at first.
  BatchNormImpl(int64_t channels, double momentum, double eps);
  /// Shapes: [B, C, H, W] -> [B, C, H, W]; in training, updates the running statistics.
  at::Tensor forward(const at::Tensor& x);
  /// forward(relu(x)) in dtype `out`: in training on the CPU (local
  /// statistics) one fused op that saves x alone, for x of the weights' dtype
  /// (out the same) or bf16 x with fp32 weights (out bf16 or fp32, computed
  /// in fp32: the bf16 stem's convolutions need no conversion pass); elsewhere
  /// relu, forward in the weights' dtype, then a conversion to `out`.
  at::Tensor forward_relu(const at::Tensor& x, at::ScalarType out);

  /// \var momentum
  /// The running statistics' update weight: new = (1 - momentum) old + momentum batch.
  /// \var eps
  /// Added to the variance before its square root.
  double momentum, eps;
  /// \var weight
  /// The learned scale, [C].
  /// \var bias
  /// The learned shift, [C].
  /// \var running_mean
  /// The running mean of each channel, [C], used in evaluation.
  /// \var running_var
  /// The running (unbiased) variance of each channel, [C], used in evaluation.
  at::Tensor weight, bias, running_mean, running_var;
  /// Sums a tensor over the ranks (identity in one process); null: local statistics.
  DifferentiableSum reduce;
};
TORCH_MODULE(BatchNorm);

/// Every BatchNorm inside `module`, in module order.
std::vector<BatchNormImpl*> batch_norms(torch::nn::Module& module);

/// Gives every BatchNorm inside `module` the cross-rank sum `reduce` (null:
/// back to each process's own batch). Returns how many it found.
int64_t set_batch_norm_reduce(torch::nn::Module& module, const DifferentiableSum& reduce);

} // namespace capsnet
