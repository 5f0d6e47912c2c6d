"""pip install ./python: the capsnet package with the operator library built by CMake.

Build the library first (`cmake --build build --target capsnet_ops`, or `make build`);
this copies build/libcapsnet_ops.so (or $CAPSNET_OPS_LIBRARY) into the package,
and the shipped model (models/efficient-capsnet-mnist.pt and its .json, or
those in $CAPSNET_MODEL_DIR) into capsnet/models, for capsnet.load().
Nothing is fetched: `pip install --no-build-isolation --no-index ./python`
works offline with Debian's python3-setuptools and python3-torch.
"""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY = 'libcapsnet_ops.so'
MODEL = 'efficient-capsnet-mnist'


def find_library():
    if os.environ.get('CAPSNET_OPS_LIBRARY'):
        candidates = [os.environ['CAPSNET_OPS_LIBRARY']]
    else:
        candidates = [os.path.join(HERE, '..', build, LIBRARY)
                      for build in ('build', 'build-minimal', 'build-cuda')]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise SystemExit(f'capsnet: {LIBRARY} not found (looked at {", ".join(candidates)}); build it '
                     'with `cmake --build build --target capsnet_ops` or set CAPSNET_OPS_LIBRARY')


def find_models():
    folder = os.environ.get('CAPSNET_MODEL_DIR') or os.path.join(HERE, '..', 'models')
    files = [os.path.join(folder, MODEL + extension) for extension in ('.pt', '.json')]
    missing = [path for path in files if not os.path.isfile(path)]
    if missing:
        raise SystemExit(f'capsnet: the shipped model is missing ({", ".join(missing)}); set '
                         'CAPSNET_MODEL_DIR to the folder of efficient-capsnet-mnist.pt and .json')
    return files


class BuildWithLibrary(build_py):
    """build_py, plus the operator library and the shipped model copied into the package."""

    def run(self):
        super().run()
        shutil.copy2(find_library(), os.path.join(self.build_lib, 'capsnet', LIBRARY))
        models = os.path.join(self.build_lib, 'capsnet', 'models')
        os.makedirs(models, exist_ok=True)
        for path in find_models():
            shutil.copy2(path, models)


class BinaryDistribution(Distribution):
    """The wheel holds a shared library: tag it for this platform."""

    def has_ext_modules(self):
        return True


setup(
    name='capsnet',
    version='0.1.0',
    description="Capsule networks' routing operators for PyTorch (torch.ops.capsnet) and "
                'loaders for models exported by the capsnet C++ tool',
    packages=['capsnet'],
    python_requires='>=3.8',
    install_requires=['torch'],
    cmdclass={'build_py': BuildWithLibrary},
    distclass=BinaryDistribution,
)
