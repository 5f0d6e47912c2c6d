"""Finds and loads libcapsnet_ops.so, which registers torch.ops.capsnet."""
import os

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
        torch.ops.load_library(path)
        _loaded = path
    return torch.ops.capsnet
