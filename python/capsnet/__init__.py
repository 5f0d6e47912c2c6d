"""capsnet's operators for PyTorch, and the models `capsnet export` writes.

    import torch, capsnet
    v = capsnet.dynamic_routing(u, W, iterations=3)      # u [B, N_in, D_in], W [N_in, N_out, D_in, D_out]
    layer = capsnet.nn.DynamicRouting(1152, 10, 8, 16)   # an nn.Module around it
    model, config = capsnet.load('model.pth')            # an exported model, as nn.Module

The operators live in libcapsnet_ops.so (C++, registered with PyTorch's
dispatcher as torch.ops.capsnet.*), loaded on first use; the C++ library and
command line call the same registered operators. Each is differentiable: the
routing's backward is its own fused kernel, which recomputes u_hat rather than
storing it.
"""
from ._ops import library_path, ops
from . import nn
from .models import CapsNet, EfficientCapsNet, load, prepare

__version__ = '0.1.0'
__all__ = ['dynamic_routing', 'squash', 'efficient_squash', 'attention_routing', 'nn', 'load',
           'prepare', 'CapsNet', 'EfficientCapsNet', 'library_path', 'ops']


def dynamic_routing(u, weight, bias=None, iterations=3, softmax='parents'):
    """Dynamic routing (Procedure 1 of Sabour et al., 2017) with u_hat = W u fused in.

    u [B, N_in, D_in], weight [N_in, N_out, D_in, D_out], bias [N_out, D_out] or
    None -> v [B, N_out, D_out]. softmax: 'parents' (the paper: each child's
    coupling sums to 1 over the parents) or 'children' (the seed's dim=1).
    float or double on the CPU; float on CUDA where the library was built with it.
    """
    return ops().dynamic_routing(u, weight, bias, iterations, softmax)


def squash(s, dim=-1, eps=1e-8):
    """Eq. 1 of 2017: |s|^2 / (1 + |s|^2) * s / |s|."""
    return ops().squash(s, dim, eps)


def efficient_squash(s, dim=-1, eps=1e-20):
    """Efficient-CapsNet's squash: (1 - 1 / e^|s|) * s / |s|."""
    return ops().efficient_squash(s, dim, eps)


def attention_routing(u_hat, bias=None, return_coupling=False):
    """Efficient-CapsNet's self-attention routing.

    u_hat [B, N_in, N_out, D], bias (the priors b) [N_in, N_out] or None ->
    v [B, N_out, D], and with return_coupling the coefficients c [B, N_in, N_out].
    """
    v, c = ops().attention_routing(u_hat, bias)
    return (v, c) if return_coupling else v
