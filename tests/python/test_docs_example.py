"""The Python example of docs/python.md ("capsnet in PyTorch"), run as
written, with an exported CapsNet as its model.pth."""
import os
import re
import shutil

import torch

from conftest import needs_binary

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'docs', 'python.md')


def readme_example():
    with open(PAGE) as f:
        text = f.read()
    section = text[text.index('# capsnet in PyTorch'):]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


@needs_binary
def test_the_readme_example_runs(exports, tmp_path, monkeypatch, capsys):
    _, out = exports
    path, _ = out['capsnet']
    shutil.copy(path, tmp_path / 'model.pth')
    shutil.copy(os.path.splitext(path)[0] + '.json', tmp_path / 'model.json')
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(readme_example(), 'docs/python.md', 'exec'), scope)
    assert 'torch.Size([64, 10, 16])' in capsys.readouterr().out
    assert scope['lengths'].shape == (8, 10)
    assert scope['W'].grad is not None and scope['W'].grad.abs().sum() > 0
    assert isinstance(scope['model'], torch.nn.Module)
    assert type(scope['shipped']).__name__ == 'EfficientCapsNet' and scope['digits'].shape == (8,)
