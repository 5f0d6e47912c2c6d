"""pip install ./python: the capsnet package with the operator library built by CMake.

Build the library first (`cmake --build build --target capsnet_ops`, or `make build`);
this copies build/libcapsnet_ops.so (or $CAPSNET_OPS_LIBRARY) into the package.
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


class BuildWithLibrary(build_py):
    """build_py, plus the operator library copied into the package."""

    def run(self):
        super().run()
        shutil.copy2(find_library(), os.path.join(self.build_lib, 'capsnet', LIBRARY))


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
