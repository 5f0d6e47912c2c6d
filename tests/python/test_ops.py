"""torch.ops.capsnet from Python: gradcheck of every operator in double over
odd shapes, equality with plain-PyTorch routing (the seed's Router with the
paper's softmax), the seed's whole training step with the operator in place
of its routing, and errors.

The library is python/capsnet's (CAPSNET_OPS_LIBRARY, which ctest sets to
the build's libcapsnet_ops.so)."""
import os

import pytest
import torch

import capsnet
from capsnet.models import CapsNet, Router, SEED_CONFIG, squash_reference

# (B, N_in, N_out, D_in, D_out, iterations, softmax, bias): odd sizes, both
# softmaxes, with and without the bias, 1 to 4 iterations.
ROUTING_SHAPES = [
    (1, 3, 2, 1, 1, 1, 'parents', False),
    (3, 7, 5, 4, 3, 3, 'parents', True),
    (2, 11, 3, 5, 7, 2, 'children', True),
    (5, 6, 9, 2, 5, 4, 'children', False),
    (4, 13, 1, 3, 2, 3, 'parents', False),
]


def routing_inputs(shape, dtype, requires_grad=True, seed=0):
    B, I, J, N, M, r, softmax, bias = shape
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(B, I, N, generator=g, dtype=dtype)
    # W large enough that the routing's agreements move the couplings.
    W = torch.randn(I, J, N, M, generator=g, dtype=dtype) * 0.7
    b = torch.randn(J, M, generator=g, dtype=dtype) * 0.3 if bias else None
    tensors = [t for t in (u, W, b) if t is not None]
    for t in tensors:
        t.requires_grad_(requires_grad)
    return u, W, b, r, softmax


def shape_id(shape):
    return 'B{}_I{}_J{}_N{}_M{}_r{}_{}{}'.format(*shape[:7], '_bias' if shape[7] else '')


@pytest.mark.parametrize('shape', ROUTING_SHAPES, ids=shape_id)
def test_dynamic_routing_gradcheck(shape):
    u, W, b, r, softmax = routing_inputs(shape, torch.double)
    inputs = (u, W) if b is None else (u, W, b)

    def f(u, W, b=None):
        return capsnet.dynamic_routing(u, W, b, iterations=r, softmax=softmax)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


def reference_routing(u, W, b, r, softmax):
    """The seed's Router (plain einsums and softmax), with the given weights."""
    I, J, N, M = W.shape
    router = Router(I, J, N, M, r, softmax=softmax, bias=b is not None,
                    routing='reference').to(W.dtype)
    with torch.no_grad():
        router.weight.copy_(W)
        if b is not None:
            router.bias.copy_(b)
    return router(u), router


@pytest.mark.parametrize('dtype,atol', [(torch.double, 1e-12), (torch.float, 2e-5)],
                         ids=['double', 'float'])
@pytest.mark.parametrize('shape', ROUTING_SHAPES, ids=shape_id)
def test_dynamic_routing_equals_plain_pytorch(shape, dtype, atol):
    u, W, b, r, softmax = routing_inputs(shape, dtype)
    v = capsnet.dynamic_routing(u, W, b, iterations=r, softmax=softmax)
    u_ref = u.detach().clone().requires_grad_()
    v_ref, router = reference_routing(u_ref, W.detach(), None if b is None else b.detach(), r,
                                      softmax)
    assert (v - v_ref).abs().max().item() < atol
    grad = torch.randn_like(v)
    v.backward(grad)
    v_ref.backward(grad)
    pairs = [(u.grad, u_ref.grad), (W.grad, router.weight.grad)]
    if b is not None:
        pairs.append((b.grad, router.bias.grad))
    for ours, theirs in pairs:
        scale = max(1.0, theirs.abs().max().item())
        assert (ours - theirs).abs().max().item() < atol * 10 * scale


def test_dynamic_routing_at_the_papers_shape():
    """1152 primary capsules of 8 to 10 of 16, r = 3, float: forward and gradients."""
    shape = (6, 1152, 10, 8, 16, 3, 'parents', False)
    u, W, _, r, softmax = routing_inputs(shape, torch.float)
    with torch.no_grad():
        W.mul_(0.02 / 0.7)
    v = capsnet.dynamic_routing(u, W, iterations=r, softmax=softmax)
    u_ref = u.detach().clone().requires_grad_()
    v_ref, router = reference_routing(u_ref, W.detach(), None, r, softmax)
    assert torch.allclose(v, v_ref, rtol=1e-4, atol=1e-6)
    (v.pow(2).sum()).backward()
    (v_ref.pow(2).sum()).backward()
    for ours, theirs in [(u.grad, u_ref.grad), (W.grad, router.weight.grad)]:
        assert (ours - theirs).norm() <= 1e-4 * theirs.norm()


def test_inference_mode_takes_the_kernel_below_autograd():
    u, W, b, r, softmax = routing_inputs(ROUTING_SHAPES[1], torch.float, requires_grad=False)
    expected = capsnet.dynamic_routing(u, W, b, iterations=r, softmax=softmax)
    with torch.inference_mode():
        got = capsnet.dynamic_routing(u, W, b, iterations=r, softmax=softmax)
    assert torch.equal(got, expected)


@pytest.mark.parametrize('dim', [-1, 1])
def test_squash_gradcheck_and_formula(dim):
    s = torch.randn(3, 5, 7, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: capsnet.squash(s, dim=dim), (s,))
    n2 = (s * s).sum(dim, keepdim=True)
    assert torch.allclose(capsnet.squash(s, dim=dim), n2 / (1 + n2) * s / n2.sqrt(), atol=1e-12)


@pytest.mark.parametrize('dim', [-1, 1])
def test_efficient_squash_gradcheck_and_formula(dim):
    s = torch.randn(4, 3, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: capsnet.efficient_squash(s, dim=dim), (s,))
    n = s.norm(dim=dim, keepdim=True)
    assert torch.allclose(capsnet.efficient_squash(s, dim=dim), (1 - torch.exp(-n)) * s / n,
                          atol=1e-12)


def attention_loops(u_hat, bias):
    """Efficient-CapsNet's FCCaps written out with loops (Eq. 5-8 of its paper)."""
    B, I, J, D = u_hat.shape
    v = torch.zeros(B, J, D, dtype=u_hat.dtype)
    for n in range(B):
        logits = torch.zeros(I, J, dtype=u_hat.dtype)
        for j in range(J):
            for i in range(I):
                logits[i, j] = sum(u_hat[n, i, j] @ u_hat[n, k, j] for k in range(I)) / D ** 0.5
        c = torch.softmax(logits, dim=1)
        for j in range(J):
            s = sum((c[i, j] + (bias[i, j] if bias is not None else 0)) * u_hat[n, i, j]
                    for i in range(I))
            norm = s.norm()
            v[n, j] = (1 - 1 / torch.exp(norm)) * s / norm
    return v


@pytest.mark.parametrize('with_bias', [True, False], ids=['bias', 'no_bias'])
def test_attention_routing_gradcheck_and_loops(with_bias):
    g = torch.Generator().manual_seed(3)
    u_hat = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.double, requires_grad=True)
    bias = torch.randn(5, 3, generator=g, dtype=torch.double, requires_grad=True) if with_bias else None
    inputs = (u_hat, bias) if with_bias else (u_hat,)
    assert torch.autograd.gradcheck(lambda *t: capsnet.attention_routing(*t), inputs)
    v, c = capsnet.attention_routing(u_hat, bias, return_coupling=True)
    assert torch.allclose(v, attention_loops(u_hat.detach(), None if bias is None else bias.detach()),
                          atol=1e-12)
    assert torch.allclose(c.sum(2), torch.ones(2, 5, dtype=torch.double))


def seed_loss(lengths, recon, data, labels):
    """The seed's loss (unsquared margin, 0.0005 x MSE), as bench/pytorch_reference.py."""
    t = torch.eye(lengths.shape[1])[labels]
    margin = (t * torch.relu(0.9 - lengths) + 0.5 * (1 - t) * torch.relu(lengths - 0.1)).sum(-1).mean()
    return margin + 0.0005 * torch.nn.functional.mse_loss(recon, data)


def test_the_seeds_training_step_with_the_operator():
    """The seed's CapsNet (W ~ N(0, 1), softmax over children), one Adam step:
    the same loss, gradients and updated weights with the operator in place of
    its routing."""
    torch.manual_seed(1)
    seed_model = CapsNet(SEED_CONFIG, routing='reference')
    ours = CapsNet(SEED_CONFIG, routing='fused')
    ours.load_state_dict(seed_model.state_dict())
    data = torch.rand(8, 1, 28, 28)
    labels = torch.randint(10, (8,))
    losses, grads, models = [], [], [seed_model, ours]
    for model in models:
        adam = torch.optim.Adam(model.parameters(), lr=1e-3)
        lengths, recon = model(data, labels)
        loss = seed_loss(lengths, recon, data, labels)
        adam.zero_grad()
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
        adam.step()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) <= 1e-5 * abs(losses[0])
    assert list(grads[0]) == list(grads[1])
    for name in grads[0]:
        theirs, mine = grads[0][name], grads[1][name]
        assert (mine - theirs).norm() <= 1e-4 * theirs.norm() + 1e-12, name
    # Adam's first step moves each weight by lr * g / (|g| + eps) (m and v
    # bias-corrected are g and g^2), a function of g with slope at most
    # 1/eps and range 2: where a gradient is near zero its two versions
    # (equal to 1e-4 of the norm, not elementwise) may move a weight
    # differently by up to lr * min(2, |g1 - g2| / eps), plus rounding.
    lr, eps = 1e-3, 1e-8
    after = [dict(m.named_parameters()) for m in models]
    for name in after[0]:
        moved_apart = lr * torch.clamp((grads[1][name] - grads[0][name]).abs() / eps, max=2.0)
        difference = (after[0][name] - after[1][name]).abs()
        bound = moved_apart + 1e-6 * after[0][name].abs() + 1e-9
        assert bool((difference <= bound).all()), name


def test_modules():
    torch.manual_seed(2)
    layer = capsnet.nn.DynamicRouting(7, 4, 3, 5, iterations=2, softmax='children', bias=True)
    u = torch.randn(3, 7, 3)
    v = layer(u)
    assert v.shape == (3, 4, 5)
    assert torch.equal(v, capsnet.dynamic_routing(u, layer.weight, layer.bias, 2, 'children'))
    assert [n for n, _ in layer.named_parameters()] == ['weight', 'bias']
    assert 'iterations=2' in repr(layer)
    s = torch.randn(2, 6, 4)
    assert torch.equal(capsnet.nn.Squash()(s), capsnet.squash(s))
    attention = capsnet.nn.AttentionRouting(5, 3, 4, 6)
    v, c = attention(torch.randn(2, 5, 4), return_coupling=True)
    assert v.shape == (2, 3, 6) and c.shape == (2, 5, 3)
    with pytest.raises(ValueError, match='parents'):
        capsnet.nn.DynamicRouting(7, 4, 3, 5, softmax='rows')


def test_errors_name_what_is_wrong():
    u, W = torch.randn(2, 5, 3), torch.randn(5, 4, 3, 2)
    with pytest.raises(RuntimeError, match='does not match weight'):
        capsnet.dynamic_routing(torch.randn(2, 6, 3), W)
    with pytest.raises(RuntimeError, match='at least one routing iteration'):
        capsnet.dynamic_routing(u, W, iterations=0)
    with pytest.raises(ValueError, match="unknown routing softmax 'rows'"):
        capsnet.dynamic_routing(u, W, softmax='rows')
    with pytest.raises(RuntimeError, match='bias of shape'):
        capsnet.dynamic_routing(u, W, torch.zeros(3, 2))
    with pytest.raises(RuntimeError, match='float'):
        capsnet.dynamic_routing(u.half(), W.half())
    with pytest.raises(RuntimeError, match='u_hat of shape'):
        capsnet.attention_routing(torch.randn(2, 3, 4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_cuda_matches_cpu():
    capsnet.ops()
    if not torch._C._dispatch_has_kernel_for_dispatch_key('capsnet::dynamic_routing', 'CUDA'):
        pytest.skip('the library was built without CUDA')
    u, W, b, r, softmax = routing_inputs(ROUTING_SHAPES[1], torch.float)
    v = capsnet.dynamic_routing(u, W, b, iterations=r, softmax=softmax)
    v.sum().backward()
    uc, Wc, bc = (t.detach().cuda().requires_grad_() for t in (u, W, b))
    vc = capsnet.dynamic_routing(uc, Wc, bc, iterations=r, softmax=softmax)
    vc.sum().backward()
    assert torch.allclose(vc.cpu(), v, atol=1e-5)
    for cpu, gpu in [(u, uc), (W, Wc), (b, bc)]:
        assert torch.allclose(gpu.grad.cpu(), cpu.grad, atol=1e-4)


def test_non_contiguous_inputs_give_the_contiguous_result():
    u, W, b, r, softmax = routing_inputs(ROUTING_SHAPES[1], torch.double, requires_grad=False)
    u_t = u.transpose(1, 2).contiguous().transpose(1, 2)      # same values, other strides
    W_t = W.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)
    assert not u_t.is_contiguous() and not W_t.is_contiguous()
    assert torch.equal(capsnet.dynamic_routing(u_t, W_t, b, r, softmax),
                       capsnet.dynamic_routing(u, W, b, r, softmax))


def test_inputs_on_two_devices_are_refused():
    u, W = torch.randn(2, 5, 3), torch.randn(5, 4, 3, 2)
    with pytest.raises(RuntimeError, match='one device'):
        capsnet.dynamic_routing(u.to('meta'), W)


def test_a_library_of_another_libtorch_is_refused(tmp_path):
    """The library's LibTorch marker changed to 7.77.7: loading it in a fresh
    Python fails with an ImportError naming both versions, without a crash."""
    import subprocess
    import sys
    path = capsnet.library_path()
    built = capsnet._ops.built_against(path)
    assert built and built.split('.')[:2] == torch.__version__.split('+')[0].split('.')[:2]
    data = open(path, 'rb').read()
    marker = f'capsnet-ops-built-against-libtorch:{built};'.encode()
    other = marker.replace(built.encode(), b'7.77.7'[:len(built)].ljust(len(built), b'7'))
    assert data.count(marker) == 1
    (tmp_path / 'libcapsnet_ops.so').write_bytes(data.replace(marker, other))
    code = 'import capsnet, torch; capsnet.squash(torch.ones(2))'
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            env=dict(os.environ, CAPSNET_OPS_LIBRARY=str(tmp_path / 'libcapsnet_ops.so'),
                                     PYTHONPATH=os.path.dirname(os.path.dirname(capsnet.__file__))))
    assert result.returncode == 1, result.stderr
    assert 'ImportError' in result.stderr and 'built against LibTorch 7.77' in result.stderr
    assert f'torch {torch.__version__}' in result.stderr
