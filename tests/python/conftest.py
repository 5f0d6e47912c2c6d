"""Makes python/ importable (the package in the checkout) for these tests, and
trains and exports the models they load (once per session).

CAPSNET_BIN and CAPSNET_TEST_MNIST (which ctest sets) name the binary and
the raw MNIST files; the tests that need them are skipped without."""
import json
import os
import struct
import subprocess
import sys

import pytest

PYTHON_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'python')
sys.path.insert(0, PYTHON_DIR)

import torch  # noqa: E402

BIN = os.environ.get('CAPSNET_BIN')
MNIST = os.environ.get('CAPSNET_TEST_MNIST')
needs_binary = pytest.mark.skipif(not (BIN and MNIST), reason='CAPSNET_BIN and CAPSNET_TEST_MNIST unset')


def run(*args):
    result = subprocess.run([BIN, *args], capture_output=True, text=True)
    assert result.returncode == 0, f'capsnet {" ".join(args)}: {result.stderr}'
    return result.stdout


def first_test_images(n, path):
    """The first n MNIST test digits as an IDX file, for `capsnet predict`."""
    with open(os.path.join(MNIST, 't10k-images-idx3-ubyte'), 'rb') as f:
        magic, _, h, w = struct.unpack('>IIII', f.read(16))
        pixels = f.read(n * h * w)
    with open(path, 'wb') as f:
        f.write(struct.pack('>IIII', magic, n, h, w) + pixels)
    return torch.frombuffer(bytearray(pixels), dtype=torch.uint8).view(n, 1, h, w)


@pytest.fixture(scope='session')
def exports(tmp_path_factory):
    """A CapsNet and an Efficient-CapsNet trained briefly, exported, and their
    predictions on 16 test digits from `capsnet predict --json`."""
    work = tmp_path_factory.mktemp('exports')
    images = first_test_images(16, str(work / 'few.idx'))
    out = {}
    for model in ('capsnet', 'efficient-capsnet'):
        run_dir = work / model
        run('train', '--model', model, '--data', MNIST, '--limit', '256', '--test-limit', '64',
            '--epochs', '1', '--batch-size', '32', '--threads', '2', '--out', str(run_dir))
        run('export', '--checkpoint', str(run_dir / 'last.pt'), '--out', str(work / f'{model}.pth'))
        predicted = json.loads(run('predict', '--checkpoint', str(run_dir / 'last.pt'), '--json',
                                   str(work / 'few.idx')))
        out[model] = (str(work / f'{model}.pth'), predicted)
    return images, out


