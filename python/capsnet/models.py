"""The models `capsnet export` writes, as torch.nn.Modules, and their loader.

CapsNet keeps the seed program's parameter names (conv1, conv2: the primary
capsules, digit_capsules.weight [N_in, N_out, D_in, D_out], decoder.{0,2,4});
Efficient-CapsNet keeps the C++ model's (conv1..4, bn1..4, primary_capsules,
routing_weight, routing_bias, decoder). Both compute what the C++ models
compute: `capsnet.load(path)` of an export gives `capsnet predict`'s lengths.
"""
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._ops import ops

# The seed's architecture: the paper's sizes, softmax over children, W ~ N(0, 1).
SEED_CONFIG = {
    'image_size': 28, 'in_channels': 1, 'num_classes': 10, 'conv1_channels': 256,
    'conv1_kernel': 9, 'primary_types': 32, 'primary_dim': 8, 'primary_kernel': 9,
    'primary_stride': 2, 'digit_dim': 16, 'routing_iterations': 3,
    'routing_softmax': 'children', 'digit_bias': False, 'w_init_std': 1.0,
    'decoder_hidden': [512, 1024],
}

EFFICIENT_CONFIG = {
    'image_size': 28, 'in_channels': 1, 'num_classes': 10, 'stem_channels': [32, 64, 64, 128],
    'stem_kernels': [5, 3, 3, 3], 'stem_strides': [1, 1, 1, 2], 'primary_dim': 8,
    'capsule_dim': 16, 'decoder_hidden': [512, 1024], 'bn_momentum': 0.01, 'bn_eps': 1e-3,
}


def squash_reference(s, eps=1e-8):
    """Eq. 1 in plain PyTorch (the seed's)."""
    s2 = (s ** 2).sum(dim=-1, keepdim=True)
    return (s2 / (1 + s2)) * (s / torch.sqrt(s2 + eps))


class Router(nn.Module):
    """The digit capsules: the seed's Router (plain PyTorch) or the fused operator.

    routing='fused' calls torch.ops.capsnet.dynamic_routing; 'reference' is the
    seed's loop of einsums, with the softmax over parents (dim 2, the paper) or
    children (dim 1, the seed). Parameters are the same either way.
    """

    def __init__(self, in_caps, out_caps, in_d, out_d, iterations, softmax='parents', bias=False,
                 w_init_std=1.0, routing='fused'):
        super().__init__()
        if softmax not in ('parents', 'children'):
            raise ValueError(f"softmax must be 'parents' or 'children', got {softmax!r}")
        if routing not in ('fused', 'reference'):
            raise ValueError(f"routing must be 'fused' or 'reference', got {routing!r}")
        self.in_caps, self.out_caps, self.iterations = in_caps, out_caps, iterations
        self.softmax, self.routing = softmax, routing
        self.weight = nn.Parameter(torch.randn(in_caps, out_caps, in_d, out_d) * w_init_std)
        self.bias = nn.Parameter(torch.zeros(out_caps, out_d)) if bias else None

    def forward(self, u):
        if self.routing == 'fused':
            return ops().dynamic_routing(u, self.weight, self.bias, self.iterations, self.softmax)
        u_hat = torch.einsum('ijnm,bin->bijm', self.weight, u)
        b = u.new_zeros(u.shape[0], self.in_caps, self.out_caps)
        v = None
        for i in range(self.iterations):
            c = F.softmax(b, dim=2 if self.softmax == 'parents' else 1)
            s = torch.einsum('bij,bijm->bjm', c, u_hat)
            if self.bias is not None:
                s = s + self.bias
            v = squash_reference(s)
            if i + 1 < self.iterations:
                b = b + torch.einsum('bjm,bijm->bij', v, u_hat)
        return v


def _decoder(width, hidden, pixels):
    layers = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, pixels), nn.Sigmoid())


class _CapsuleModel(nn.Module):
    """forward(data, labels=None) -> (lengths [B, K], reconstructions [B, C, H, W])."""

    def forward(self, data, labels=None):
        caps = self.capsules(data)
        lengths = caps.norm(dim=-1)
        chosen = lengths.argmax(-1) if labels is None else labels
        mask = F.one_hot(chosen, caps.shape[1]).to(caps.dtype)
        c = self.config
        recon = self.decoder((caps * mask[:, :, None]).flatten(1)).view(
            -1, c['in_channels'], c['image_size'], c['image_size'])
        return lengths, recon


class CapsNet(_CapsuleModel):
    """The 2017 CapsNet with the seed's parameter names; routing 'fused' or 'reference'."""

    def __init__(self, config=None, routing='fused'):
        super().__init__()
        c = dict(SEED_CONFIG, **(config or {}))
        self.config = c
        grid = ((c['image_size'] - c['conv1_kernel'] + 1) - c['primary_kernel']) // c['primary_stride'] + 1
        self.conv1 = nn.Conv2d(c['in_channels'], c['conv1_channels'], kernel_size=c['conv1_kernel'])
        self.conv2 = nn.Conv2d(c['conv1_channels'], c['primary_types'] * c['primary_dim'],
                               kernel_size=c['primary_kernel'], stride=c['primary_stride'])
        self.digit_capsules = Router(c['primary_types'] * grid * grid, c['num_classes'],
                                     c['primary_dim'], c['digit_dim'], c['routing_iterations'],
                                     softmax=c['routing_softmax'], bias=c['digit_bias'],
                                     w_init_std=c['w_init_std'], routing=routing)
        self.decoder = _decoder(c['num_classes'] * c['digit_dim'], c['decoder_hidden'],
                                c['in_channels'] * c['image_size'] ** 2)

    def primary(self, data):
        x = self.conv2(F.relu(self.conv1(data)))
        u = x.view(x.shape[0], self.config['primary_dim'], -1).permute(0, 2, 1)
        return squash_reference(u) if self.digit_capsules.routing == 'reference' else ops().squash(u)

    def capsules(self, data):
        return self.digit_capsules(self.primary(data))


class EfficientCapsNet(_CapsuleModel):
    """Efficient-CapsNet (Mazzia et al., 2021) with the C++ model's parameter names."""

    def __init__(self, config=None):
        super().__init__()
        c = dict(EFFICIENT_CONFIG, **(config or {}))
        self.config = c
        channels, side = c['in_channels'], c['image_size']
        for k, (width, kernel, stride) in enumerate(
                zip(c['stem_channels'], c['stem_kernels'], c['stem_strides']), start=1):
            setattr(self, f'conv{k}', nn.Conv2d(channels, width, kernel, stride=stride))
            setattr(self, f'bn{k}', nn.BatchNorm2d(width, eps=c['bn_eps'], momentum=c['bn_momentum']))
            channels, side = width, (side - kernel) // stride + 1
        self.stem_layers = len(c['stem_channels'])
        self.primary_capsules = nn.Conv2d(channels, channels, side, groups=channels)
        n_in = channels // c['primary_dim']
        self.routing_weight = nn.Parameter(
            torch.zeros(n_in, c['num_classes'], c['primary_dim'], c['capsule_dim']))
        self.routing_bias = nn.Parameter(torch.zeros(n_in, c['num_classes']))
        self.decoder = _decoder(c['num_classes'] * c['capsule_dim'], c['decoder_hidden'],
                                c['in_channels'] * c['image_size'] ** 2)

    def capsules(self, data, return_coupling=False):
        x = data
        for k in range(1, self.stem_layers + 1):
            x = getattr(self, f'bn{k}')(F.relu(getattr(self, f'conv{k}')(x)))
        x = self.primary_capsules(x)
        u = ops().efficient_squash(x.reshape(x.shape[0], -1, self.config['primary_dim']))
        u_hat = torch.einsum('ijnm,bin->bijm', self.routing_weight, u)
        v, c = ops().attention_routing(u_hat, self.routing_bias)
        return (v, c) if return_coupling else v


def prepare(images, config):
    """uint8 or [0, 1] float images [B, C, H, W] -> the model's input."""
    x = images.float() / 255 if images.dtype == torch.uint8 else images.float()
    if config.get('normalize'):
        if 'channel_mean' in config:  # per channel (a folder model's statistics)
            shape = (1, -1, 1, 1)
            x = (x - torch.tensor(config['channel_mean']).view(shape)) / torch.tensor(config['channel_std']).view(shape)
        else:  # exports from before the per-channel statistics
            x = (x - config['mnist_mean']) / config['mnist_std']
    return x


SHIPPED_MODEL = 'efficient-capsnet-mnist.pt'


def shipped_model_path():
    """The shipped model (Efficient-CapsNet on MNIST, models/README.md): in the
    installed package, the source tree's models/, or an installed prefix's
    share/capsnet/models, whichever is found first; FileNotFoundError names them."""
    here = os.path.dirname(os.path.abspath(__file__))
    folders = [os.path.join(here, 'models'), os.path.join(here, '..', '..', 'models'),
               os.path.join(sys.prefix, 'share', 'capsnet', 'models'),
               '/usr/local/share/capsnet/models', '/usr/share/capsnet/models']
    for folder in folders:
        path = os.path.normpath(os.path.join(folder, SHIPPED_MODEL))
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f'the shipped model {SHIPPED_MODEL} is in none of '
                            f'{", ".join(os.path.normpath(f) for f in folders)}: pass the path of '
                            'a `capsnet export` file to capsnet.load')


def _read_weights(path):
    """name -> tensor of an export (torch.load), or of a capsnet checkpoint
    (.pt: a TorchScript archive whose 'model' holds the module's own names)."""
    if not path.endswith('.pt'):
        return torch.load(path)
    archive = torch.jit.load(path, map_location='cpu')
    return {name[len('model.'):]: tensor for name, tensor in archive.state_dict().items()
            if name.startswith('model.')}


def load(path=None, routing='fused'):
    """Loads `capsnet export` output: the weights at `path` and the JSON beside it.

    With no path, the shipped model (shipped_model_path()): a checkpoint of
    Efficient-CapsNet's weights (whose names are the module's) with the JSON
    `capsnet export` wrote for it. Returns (model in eval mode, config).
    routing: 'fused' (the operator) or 'reference' (plain PyTorch; CapsNet only).
    """
    if path is None:
        path = shipped_model_path()
    config_path = os.path.splitext(path)[0] + '.json'
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f'{config_path}: the configuration `capsnet export` writes beside '
                                f'{path} is missing')
    with open(config_path) as f:
        config = json.load(f)
    if config.get('format') != 'capsnet-pytorch-export-v1':
        raise ValueError(f"{config_path}: not a capsnet export (format {config.get('format')!r})")
    name = config.get('model_name', 'capsnet')
    if name == 'capsnet':
        model = CapsNet(config['model'], routing=routing)
    elif name == 'efficient-capsnet':
        model = EfficientCapsNet(config['model'])
    else:
        raise ValueError(f'{config_path}: model {name!r} has no Python loader (capsnet, efficient-capsnet)')
    state = _read_weights(path)
    # PyTorch's batch norm counts its batches; capsnet's has no such buffer.
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    if missing or unexpected:
        raise ValueError(f'{path}: does not match the {name} of {config_path}: '
                         f'missing {missing}, unexpected {unexpected}')
    model.eval()
    return model, config
