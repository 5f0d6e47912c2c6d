"""Capsule layers as torch.nn.Modules, on the registered operators."""
import math

import torch
from torch import nn

from ._ops import ops


class Squash(nn.Module):
    """Eq. 1 of 2017 along `dim`."""

    def __init__(self, dim=-1, eps=1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, s):
        return ops().squash(s, self.dim, self.eps)


class DynamicRouting(nn.Module):
    """Digit capsules: u_hat = W u and `iterations` rounds of routing by agreement.

    in_caps capsules of in_dim -> out_caps capsules of out_dim. weight has the
    seed's layout [in_caps, out_caps, in_dim, out_dim]; bias (optional) is added
    to s_j. forward(u [B, in_caps, in_dim]) -> v [B, out_caps, out_dim].
    """

    def __init__(self, in_caps, out_caps, in_dim, out_dim, iterations=3, softmax='parents',
                 bias=False, w_init_std=0.01):
        super().__init__()
        if softmax not in ('parents', 'children'):
            raise ValueError(f"softmax must be 'parents' or 'children', got {softmax!r}")
        self.iterations, self.softmax = iterations, softmax
        self.weight = nn.Parameter(torch.randn(in_caps, out_caps, in_dim, out_dim) * w_init_std)
        self.bias = nn.Parameter(torch.zeros(out_caps, out_dim)) if bias else None

    def forward(self, u):
        return ops().dynamic_routing(u, self.weight, self.bias, self.iterations, self.softmax)

    def extra_repr(self):
        i, j, n, m = self.weight.shape
        return (f'{i} x {n} -> {j} x {m}, iterations={self.iterations}, softmax={self.softmax}, '
                f'bias={self.bias is not None}')


class AttentionRouting(nn.Module):
    """Efficient-CapsNet's class capsules: u_hat = W u, self-attention routing with priors b.

    forward(u [B, in_caps, in_dim]) -> v [B, out_caps, out_dim]; parameters
    `weight` [in_caps, out_caps, in_dim, out_dim] and `bias` [in_caps, out_caps].
    """

    def __init__(self, in_caps, out_caps, in_dim, out_dim):
        super().__init__()
        self.weight = nn.Parameter(
            torch.randn(in_caps, out_caps, in_dim, out_dim) * math.sqrt(2.0 / (in_dim * out_caps * in_caps)))
        self.bias = nn.Parameter(torch.zeros(in_caps, out_caps))

    def forward(self, u, return_coupling=False):
        u_hat = torch.einsum('ijnm,bin->bijm', self.weight, u)
        v, c = ops().attention_routing(u_hat, self.bias)
        return (v, c) if return_coupling else v
