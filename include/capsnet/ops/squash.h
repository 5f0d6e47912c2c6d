#pragma once

#include <ATen/ATen.h>

namespace capsnet {

/// Default epsilon inside the square root of squash: keeps the gradient finite
/// for an all-zero vector (the seed uses the same value).
constexpr double kSquashEps = 1e-8;

/// Squash non-linearity, Eq. 1 of Sabour et al. (2017):
///   v = |s|^2 / (1 + |s|^2) * s / sqrt(|s|^2 + eps)
/// Shapes: [..., D] -> [..., D] (the vector is taken along `dim`).
at::Tensor squash(const at::Tensor& s, int64_t dim = -1, double eps = kSquashEps);

} // namespace capsnet
