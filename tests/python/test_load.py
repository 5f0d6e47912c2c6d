"""capsnet.load of exported models against `capsnet predict`, and the package
installed with pip (offline) loading its own copy of the library.

Needs the binary and MNIST: CAPSNET_BIN and CAPSNET_TEST_MNIST, which ctest
sets; skipped without them."""
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import capsnet

from conftest import PYTHON_DIR, needs_binary, run


@needs_binary
@pytest.mark.parametrize('model_name,routing', [('capsnet', 'fused'), ('capsnet', 'reference'),
                                                ('efficient-capsnet', 'fused')])
def test_load_equals_capsnet_predict(exports, model_name, routing):
    images, out = exports
    path, predicted = out[model_name]
    model, config = capsnet.load(path, routing=routing)
    assert config['model_name'] == model_name
    assert type(model).__name__ == {'capsnet': 'CapsNet', 'efficient-capsnet': 'EfficientCapsNet'}[model_name]
    with torch.no_grad():
        lengths, recon = model(capsnet.prepare(images, config))
    cpp_lengths = torch.tensor([row['lengths'] for row in predicted])
    cpp_classes = torch.tensor([row['prediction'] for row in predicted])
    assert (lengths - cpp_lengths).abs().max().item() < 1e-4
    assert torch.equal(lengths.argmax(1), cpp_classes)
    assert recon.shape == (16, 1, 28, 28)


@needs_binary
def test_load_with_no_path_is_the_shipped_model(exports):
    """capsnet.load() reads the shipped checkpoint itself (models/), and gives
    what `capsnet predict` with no --checkpoint (the same model) gives."""
    images, out = exports
    model, config = capsnet.load()
    assert config['model_name'] == 'efficient-capsnet'
    assert capsnet.models.shipped_model_path().endswith(os.path.join('models', 'efficient-capsnet-mnist.pt'))
    predicted = json.loads(run('predict', '--json', os.path.join(os.path.dirname(out['capsnet'][0]), 'few.idx')))
    with torch.no_grad():
        lengths, _ = model(capsnet.prepare(images, config))
    cpp_lengths = torch.tensor([row['lengths'] for row in predicted])
    assert (lengths - cpp_lengths).abs().max().item() < 1e-4
    assert torch.equal(lengths.argmax(1), torch.tensor([row['prediction'] for row in predicted]))


@needs_binary
def test_load_refuses_a_mismatched_export(exports, tmp_path):
    _, out = exports
    path, _ = out['capsnet']
    with open(os.path.splitext(path)[0] + '.json') as f:
        config = json.load(f)
    config['model']['digit_dim'] = 8
    torch.save(torch.load(path), tmp_path / 'bad.pth')
    with open(tmp_path / 'bad.json', 'w') as f:
        json.dump(config, f)
    with pytest.raises((ValueError, RuntimeError), match='size mismatch|does not match'):
        capsnet.load(str(tmp_path / 'bad.pth'))
    with pytest.raises(FileNotFoundError, match='configuration'):
        os.remove(tmp_path / 'bad.json')
        capsnet.load(str(tmp_path / 'bad.pth'))


def test_pip_installs_the_package_offline(tmp_path):
    """pip install of python/ into a virtual environment that sees Debian's
    torch, without network; the installed package loads its own library."""
    library = os.environ.get('CAPSNET_OPS_LIBRARY') or capsnet.library_path()
    library = library and os.path.abspath(library)
    if library is None:
        pytest.skip('no libcapsnet_ops.so built')
    # From a copy, as pip would from a download: no build files in the checkout.
    source = tmp_path / 'source'
    shutil.copytree(PYTHON_DIR, source,
                    ignore=shutil.ignore_patterns('build', '*.egg-info', '__pycache__'))
    venv = tmp_path / 'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--system-site-packages', str(venv)], check=True)
    pip = subprocess.run([str(venv / 'bin' / 'pip'), 'install', '--no-build-isolation', '--no-index',
                          '--no-cache-dir', str(source)], capture_output=True, text=True,
                         env=dict(os.environ, CAPSNET_OPS_LIBRARY=library,
                                  CAPSNET_MODEL_DIR=os.path.join(PYTHON_DIR, '..', 'models')))
    assert pip.returncode == 0, pip.stdout + pip.stderr
    code = ('import torch, capsnet; print(capsnet.library_path()); '
            'print(capsnet.dynamic_routing(torch.ones(2, 3, 4), torch.ones(3, 5, 4, 6)).shape); '
            'print(capsnet.models.shipped_model_path()); print(type(capsnet.load()[0]).__name__)')
    env = {k: v for k, v in os.environ.items() if k not in ('CAPSNET_OPS_LIBRARY', 'PYTHONPATH')}
    check = subprocess.run([str(venv / 'bin' / 'python'), '-c', code], capture_output=True, text=True,
                           cwd=str(tmp_path), env=env)
    assert check.returncode == 0, check.stderr
    installed, shape, model, model_class = check.stdout.split('\n')[:4]
    assert installed.startswith(str(venv)) and installed.endswith('libcapsnet_ops.so')
    assert shape == 'torch.Size([2, 5, 6])'
    # The shipped model travels in the package: load() with no path finds its copy.
    assert model.startswith(str(venv)) and model.endswith('efficient-capsnet-mnist.pt')
    assert model_class == 'EfficientCapsNet'
