"""The seed's CapsNet in plain PyTorch, and the loader for `capsnet export`.

The model is the seed program's (labml_nn's capsule network): parameter names
conv1.*, conv2.* (the primary capsules), digit_capsules.weight
[N_in, N_out, D_in, D_out], decoder.{0,2,4}.*. Built from the `model` section
of the JSON that `capsnet export` writes beside the weights, it computes what
the C++ model computes: routing softmax over parents (dim 2 of the logits,
the paper) or children (dim 1, the seed), optional bias on s_j.

    import capsnet_seed
    model, config = capsnet_seed.load_export('model.pth')   # reads model.json too
    lengths, recon = model(capsnet_seed.prepare(images_uint8, config))
"""
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

# The seed's architecture: the paper's sizes, softmax over children, W ~ N(0, 1).
SEED_CONFIG = {
    'image_size': 28, 'in_channels': 1, 'num_classes': 10, 'conv1_channels': 256,
    'conv1_kernel': 9, 'primary_types': 32, 'primary_dim': 8, 'primary_kernel': 9,
    'primary_stride': 2, 'digit_dim': 16, 'routing_iterations': 3,
    'routing_softmax': 'children', 'digit_bias': False, 'w_init_std': 1.0,
    'decoder_hidden': [512, 1024],
}


def squash(s, eps=1e-8):
    s2 = (s ** 2).sum(dim=-1, keepdim=True)
    return (s2 / (1 + s2)) * (s / torch.sqrt(s2 + eps))


class Router(nn.Module):
    def __init__(self, in_caps, out_caps, in_d, out_d, iterations, softmax_dim=1, bias=False,
                 w_init_std=1.0):
        super().__init__()
        self.in_caps, self.out_caps, self.iterations = in_caps, out_caps, iterations
        self.softmax_dim = softmax_dim
        self.weight = nn.Parameter(torch.randn(in_caps, out_caps, in_d, out_d) * w_init_std)
        self.bias = nn.Parameter(torch.zeros(out_caps, out_d)) if bias else None

    def forward(self, u):
        u_hat = torch.einsum('ijnm,bin->bijm', self.weight, u)
        b = u.new_zeros(u.shape[0], self.in_caps, self.out_caps)
        v = None
        for i in range(self.iterations):
            c = F.softmax(b, dim=self.softmax_dim)
            s = torch.einsum('bij,bijm->bjm', c, u_hat)
            if self.bias is not None:
                s = s + self.bias
            v = squash(s)
            if i + 1 < self.iterations:
                b = b + torch.einsum('bjm,bijm->bij', v, u_hat)
        return v


class CapsNet(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        c = dict(SEED_CONFIG, **(config or {}))
        self.config = c
        grid = ((c['image_size'] - c['conv1_kernel'] + 1) - c['primary_kernel']) // c['primary_stride'] + 1
        self.conv1 = nn.Conv2d(c['in_channels'], c['conv1_channels'], kernel_size=c['conv1_kernel'])
        self.conv2 = nn.Conv2d(c['conv1_channels'], c['primary_types'] * c['primary_dim'],
                               kernel_size=c['primary_kernel'], stride=c['primary_stride'])
        self.digit_capsules = Router(c['primary_types'] * grid * grid, c['num_classes'],
                                     c['primary_dim'], c['digit_dim'], c['routing_iterations'],
                                     softmax_dim=2 if c['routing_softmax'] == 'parents' else 1,
                                     bias=c['digit_bias'], w_init_std=c['w_init_std'])
        layers, width = [], c['num_classes'] * c['digit_dim']
        for hidden in c['decoder_hidden']:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers += [nn.Linear(width, c['in_channels'] * c['image_size'] ** 2), nn.Sigmoid()]
        self.decoder = nn.Sequential(*layers)

    def capsules(self, data):
        x = F.relu(self.conv1(data))
        x = self.conv2(x)
        caps = squash(x.view(x.shape[0], self.config['primary_dim'], -1).permute(0, 2, 1))
        return self.digit_capsules(caps)

    def forward(self, data, labels=None):
        """data: [B, C, H, W] as prepared by prepare(); returns (lengths, reconstructions)."""
        caps = self.capsules(data)
        lengths = caps.norm(dim=-1)
        mask_classes = lengths.argmax(-1) if labels is None else labels
        mask = torch.eye(self.config['num_classes'], device=data.device)[mask_classes]
        c = self.config
        recon = self.decoder((caps * mask[:, :, None]).flatten(1)).view(
            -1, c['in_channels'], c['image_size'], c['image_size'])
        return lengths, recon


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


def load_export(path):
    """Loads `capsnet export` output: the weights at `path`, the JSON beside it."""
    with open(os.path.splitext(path)[0] + '.json') as f:
        config = json.load(f)
    model = CapsNet(config['model'])
    model.load_state_dict(torch.load(path))
    model.eval()
    return model, config
