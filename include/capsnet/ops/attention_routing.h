#pragma once

// Self-attention routing of Efficient-CapsNet (Mazzia, Salvetti and
// Chiaberge, "Efficient-CapsNet: capsule network with self-attention
// routing", Scientific Reports 11, 2021; Section "Self-attention routing",
// Eq. 5 to 8), as the authors' FCCaps layer computes it
// (EscVM/Efficient-CapsNet, utils/layers.py at 4b337f5).

#include <ATen/ATen.h>

namespace capsnet {

/// Epsilon of Efficient-CapsNet's squash and routing (its config.json: 10e-21).
constexpr double kEfficientSquashEps = 1e-20;

/// The squash of Efficient-CapsNet (Eq. 4 of its paper):
///   v = (1 - 1 / (exp(|s|) + eps)) * s / (|s| + eps)
/// Unlike Eq. 1 of 2017 it saturates fast: |v| = 1 - exp(-|s|).
/// Shapes: [..., D] -> [..., D] (the vector is taken along `dim`).
at::Tensor efficient_squash(const at::Tensor& s, int64_t dim = -1,
                            double eps = kEfficientSquashEps);

/// Self-attention routing in plain ATen ops (the reference). For each parent
/// j, the agreement of child i with every child k, A^j = U^j U^j^T / sqrt(D)
/// (U^j: the rows u_hat_{j|i}), summed over k, gives the logit of (i, j); the
/// coupling coefficients are its softmax over the parents j (the authors'
/// `softmax(c, axis=1)`), the learned priors b_ij are added to them, and
///   s_j = sum_i (c_ij + b_ij) u_hat_{j|i},  v_j = efficient_squash(s_j).
/// The row sums of A^j are u_hat_{j|i} . sum_k u_hat_{j|k}: computed so,
/// without forming the N_in x N_in matrices. Once differentiable by autograd.
/// Shapes: u_hat [B, N_in, N_out, D] (prediction_vectors' layout),
///   bias [N_in, N_out] or undefined -> v [B, N_out, D]; `coupling`, when not
///   null, receives c [B, N_in, N_out] (before the priors are added).
at::Tensor attention_routing(const at::Tensor& u_hat, const at::Tensor& bias,
                             at::Tensor* coupling = nullptr);

} // namespace capsnet
