#!/usr/bin/python3
"""Loads a `capsnet export` file in PyTorch and checks it against the C++ model.

Usage: export_roundtrip.py MODEL.pth IMAGES.idx PREDICT.json
PREDICT.json is `capsnet predict --json IMAGES.idx` for the same checkpoint.
Checks the seed's parameter names and shapes, then that the seed's model in
plain PyTorch (python/capsnet's CapsNet with routing='reference': no operator
library needed) gives the C++ capsule lengths and predictions.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'python'))
import capsnet  # noqa: E402

model_path, idx_path, predict_path = sys.argv[1:4]
state = torch.load(model_path)
names = list(state.keys())
expected = ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias', 'digit_capsules.weight',
            'decoder.0.weight', 'decoder.0.bias', 'decoder.2.weight', 'decoder.2.bias',
            'decoder.4.weight', 'decoder.4.bias']
assert names == expected, f'names {names}'
shapes = {k: list(v.shape) for k, v in state.items()}
assert shapes['conv1.weight'] == [256, 1, 9, 9], shapes
assert shapes['conv2.weight'] == [256, 256, 9, 9], shapes
assert shapes['digit_capsules.weight'] == [1152, 10, 8, 16], shapes
assert shapes['decoder.4.weight'] == [784, 1024], shapes

model, config = capsnet.load(model_path, routing='reference')
with open(idx_path, 'rb') as f:
    magic, n, h, w = struct.unpack('>IIII', f.read(16))
    assert magic == 0x803, hex(magic)
    images = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8).view(n, 1, h, w)
with torch.no_grad():
    lengths, _ = model(capsnet.prepare(images, config))
with open(predict_path) as f:
    cpp = json.load(f)
assert len(cpp) == n, (len(cpp), n)
cpp_lengths = torch.tensor([row['lengths'] for row in cpp])
cpp_predictions = torch.tensor([row['prediction'] for row in cpp])
err = (lengths - cpp_lengths).abs().max().item()
assert err < 1e-4, f'capsule lengths differ by {err}'
assert torch.equal(lengths.argmax(1), cpp_predictions), (lengths.argmax(1), cpp_predictions)
print(f'export round trip: {len(names)} tensors, {n} images, predictions equal, '
      f'max length difference {err:.2e}')
