"""Finds and loads libcapsnet_ops.so, which registers torch.ops.capsnet."""
import os
import re

import torch

_LIBRARY = 'libcapsnet_ops.so'
_loaded = None


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    if os.environ.get('CAPSNET_OPS_LIBRARY'):
        yield os.environ['CAPSNET_OPS_LIBRARY']
        return
    yield os.path.join(here, _LIBRARY)                               # installed with the package
    repo = os.path.dirname(os.path.dirname(here))                    # python/capsnet -> the checkout
    for build in ('build', 'build-minimal', 'build-cuda'):
        yield os.path.join(repo, build, _LIBRARY)                    # a build tree


def library_path():
    """The path of the operator library that is (or would be) loaded."""
    return _loaded or next((p for p in _candidates() if os.path.isfile(p)), None)


def built_against(path):
    """The LibTorch version the library at `path` was built against (its marker), or None."""
    with open(path, 'rb') as f:
        found = re.search(rb'capsnet-ops-built-against-libtorch:([0-9]+\.[0-9]+[0-9.]*);', f.read())
    return found.group(1).decode() if found else None


def _minor(version):
    return '.'.join(version.split('+')[0].split('.')[:2])


def check_version(path):
    """Raises ImportError unless the library was built against this torch's major.minor."""
    built = built_against(path)
    if built is None:
        raise ImportError(f'capsnet: {path} is not a capsnet operator library (no LibTorch '
                          'version marker); rebuild it with `cmake --build build --target capsnet_ops`')
    if _minor(built) != _minor(torch.__version__):
        raise ImportError(
            f'capsnet: {path} was built against LibTorch {built}, but this Python has torch '
            f'{torch.__version__}; build capsnet against the LibTorch of this torch (for a pip '
            'wheel: cmake -DCMAKE_PREFIX_PATH=$(python3 -c "import torch; '
            'print(torch.utils.cmake_prefix_path)")), or use the Python whose torch matches')


def ops():
    """torch.ops.capsnet, loading the library on first use."""
    global _loaded
    if _loaded is None:
        path = library_path()
        if path is None:
            tried = ', '.join(_candidates())
            raise ImportError(
                f'capsnet: {_LIBRARY} not found (tried {tried}). Build it with '
                '`cmake --build build --target capsnet_ops`, install the package with '
                '`pip install ./python` after building, or set CAPSNET_OPS_LIBRARY to its path.')
        check_version(path)
        try:
            torch.ops.load_library(path)
        except OSError as e:
            raise ImportError(f'capsnet: cannot load {path}: {e}') from e
        _loaded = path
        _register_fakes()
    return torch.ops.capsnet


def _register_fakes():
    """Shape-only ("fake") versions of the fused routing's kernels for PyTorch 2's
    tracing (torch.compile, torch.library.opcheck): the outputs' shapes and
    devices, the couplings in each device's own layout ([B, r, J, I] on the
    CPU, [B, r, I, J] on a GPU). squash, efficient_squash and
    attention_routing are ATen compositions and need none. PyTorch 1.13 has
    no fake tensors: nothing to register there."""
    register = getattr(torch.library, 'register_fake', None) or getattr(torch.library, 'impl_abstract', None)
    if register is None:
        return

    def forward(u, weight, bias, iterations, parents):
        B, I, J, M = u.shape[0], weight.shape[0], weight.shape[1], weight.shape[3]
        layout = (B, iterations, I, J) if u.device.type == 'cuda' else (B, iterations, J, I)
        return (u.new_empty((B, J, M)), u.new_empty(layout), u.new_empty((B, iterations, J, M)),
                u.new_empty((B, iterations, J, M)))

    def backward(grad_v, u, weight, coupling, s, v, iterations, parents, has_bias):
        J, M = weight.shape[1], weight.shape[3]
        return (torch.empty_like(u), torch.empty_like(weight),
                u.new_empty((J, M) if has_bias else (0,)))

    def routing(u, weight, bias=None, iterations=3, softmax='parents'):
        return u.new_empty((u.shape[0], weight.shape[1], weight.shape[3]))

    for name, fake in (('capsnet::_dynamic_routing_forward', forward),
                       ('capsnet::_dynamic_routing_backward', backward),
                       ('capsnet::dynamic_routing', routing)):
        register(name)(fake)
