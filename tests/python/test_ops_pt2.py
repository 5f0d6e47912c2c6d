"""torch.ops.capsnet under PyTorch 2 (the GPU machines' 2.11; skipped on
Debian's 1.13): torch.library.opcheck of every operator (schema, autograd
registration, fake tensors, AOT dispatch), on the CPU and on a GPU where
there is one, and torch.compile of a module that calls them, against eager."""
import pytest
import torch

import capsnet

pytestmark = pytest.mark.skipif(not hasattr(torch.library, 'opcheck'),
                                reason=f'torch.library.opcheck needs PyTorch 2.4+, this is {torch.__version__}')

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])


def routing_args(device, bias=True, requires_grad=True):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(3, 7, 4, generator=g).to(device)
    w = (torch.randn(7, 5, 4, 6, generator=g) * 0.7).to(device)
    b = (torch.randn(5, 6, generator=g) * 0.3).to(device) if bias else None
    for t in (u, w, b):
        if t is not None:
            t.requires_grad_(requires_grad)
    return u, w, b


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('bias', [True, False])
def test_opcheck_dynamic_routing(device, bias):
    ops = capsnet.ops()
    u, w, b = routing_args(device, bias)
    torch.library.opcheck(ops.dynamic_routing.default, (u, w, b, 3, 'parents'))
    with torch.no_grad():
        torch.library.opcheck(ops._dynamic_routing_forward.default,
                              (u.detach(), w.detach(), b.detach() if bias else None, 2, True))


@pytest.mark.parametrize('device', DEVICES)
def test_opcheck_squashes_and_attention_routing(device):
    ops = capsnet.ops()
    s = torch.randn(4, 10, 16, device=device, requires_grad=True)
    torch.library.opcheck(ops.squash.default, (s, -1, 1e-8))
    torch.library.opcheck(ops.efficient_squash.default, (s, -1, 1e-20))
    u_hat = torch.randn(2, 16, 10, 16, device=device, requires_grad=True)
    bias = torch.zeros(16, 10, device=device, requires_grad=True)
    torch.library.opcheck(ops.attention_routing.default, (u_hat, bias))


class Capsules(torch.nn.Module):
    """The operators in one module: squash, the fused routing, the attention routing."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.weight = torch.nn.Parameter(torch.randn(7, 5, 4, 6, generator=g) * 0.7)
        self.bias = torch.nn.Parameter(torch.zeros(7, 5))

    def forward(self, u):
        ops = capsnet.ops()
        v = ops.dynamic_routing(ops.squash(u, -1, 1e-8), self.weight, None, 3, 'parents')
        u_hat = torch.einsum('ijnm,bin->bijm', self.weight, ops.efficient_squash(u, -1, 1e-20))
        return v, ops.attention_routing(u_hat, self.bias)[0]


@pytest.mark.parametrize('device', DEVICES)
def test_compiled_module_matches_eager(device):
    module = Capsules().to(device)
    u = torch.randn(3, 7, 4, device=device)
    compiled = torch.compile(module, fullgraph=True)
    for eager, traced in zip(module(u), compiled(u)):
        torch.testing.assert_close(traced, eager)
    # And its gradients.
    (module(u)[0].sum() + module(u)[1].sum()).backward()
    eager_grad = module.weight.grad.clone()
    module.weight.grad = None
    (compiled(u)[0].sum() + compiled(u)[1].sum()).backward()
    torch.testing.assert_close(module.weight.grad, eager_grad)
