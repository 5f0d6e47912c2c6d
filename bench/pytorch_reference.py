#!/usr/bin/env python3
"""The seed's CapsNet in plain PyTorch, timed like `capsnet bench`.

Same shapes, batch and step as the C++ benchmark: forward, margin loss plus
0.0005 x reconstruction loss, backward, Adam. The model and losses are the
seed's (labml_nn's Router: einsum for u_hat, softmax over dim 1, W ~ N(0, 1);
unsquared margin loss, MSE); the work per step is the same as the paper's.
Run with Debian's python3-torch:
    /usr/bin/python3 bench/pytorch_reference.py --batch-size 128 --steps 5 --json
"""
import argparse
import json
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def squash(s, eps=1e-8):
    s2 = (s ** 2).sum(dim=-1, keepdim=True)
    return (s2 / (1 + s2)) * (s / torch.sqrt(s2 + eps))


class Router(nn.Module):
    def __init__(self, in_caps, out_caps, in_d, out_d, iterations):
        super().__init__()
        self.in_caps, self.out_caps, self.iterations = in_caps, out_caps, iterations
        self.weight = nn.Parameter(torch.randn(in_caps, out_caps, in_d, out_d))

    def forward(self, u):
        u_hat = torch.einsum('ijnm,bin->bijm', self.weight, u)
        b = u.new_zeros(u.shape[0], self.in_caps, self.out_caps)
        v = None
        for i in range(self.iterations):
            c = F.softmax(b, dim=1)
            s = torch.einsum('bij,bijm->bjm', c, u_hat)
            v = squash(s)
            if i + 1 < self.iterations:
                b = b + torch.einsum('bjm,bijm->bij', v, u_hat)
        return v


class CapsNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 256, kernel_size=9, stride=1)
        self.conv2 = nn.Conv2d(256, 32 * 8, kernel_size=9, stride=2)
        self.digit_capsules = Router(32 * 6 * 6, 10, 8, 16, 3)
        self.decoder = nn.Sequential(nn.Linear(160, 512), nn.ReLU(), nn.Linear(512, 1024), nn.ReLU(),
                                     nn.Linear(1024, 784), nn.Sigmoid())

    def forward(self, data, labels=None):
        x = F.relu(self.conv1(data))
        x = self.conv2(x)
        caps = squash(x.view(x.shape[0], 8, 32 * 6 * 6).permute(0, 2, 1))
        caps = self.digit_capsules(caps)
        lengths = caps.norm(dim=-1)
        mask_classes = lengths.argmax(-1) if labels is None else labels
        mask = torch.eye(10, device=data.device)[mask_classes]
        recon = self.decoder((caps * mask[:, :, None]).view(x.shape[0], -1)).view(-1, 1, 28, 28)
        return lengths, recon


def loss_of(lengths, recon, data, labels):
    t = torch.eye(10)[labels]
    margin = (t * F.relu(0.9 - lengths) + 0.5 * (1 - t) * F.relu(lengths - 0.1)).sum(-1).mean()
    return margin + 0.0005 * F.mse_loss(recon, data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=0, help='0: every core')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        import os
        torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    model = CapsNet()
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.rand(args.batch_size, 1, 28, 28)
    labels = torch.randint(10, (args.batch_size,))

    train = 0.0
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        lengths, recon = model(data, labels)
        loss = loss_of(lengths, recon, data, labels)
        adam.zero_grad()
        loss.backward()
        adam.step()
        if step >= args.warmup:
            train += time.perf_counter() - start

    infer = 0.0
    model.eval()
    with torch.no_grad():
        for step in range(args.warmup + args.steps):
            start = time.perf_counter()
            x = F.relu(model.conv1(data))
            caps = squash(model.conv2(x).view(x.shape[0], 8, 1152).permute(0, 2, 1))
            model.digit_capsules(caps).norm(dim=-1).argmax(-1).sum().item()
            if step >= args.warmup:
                infer += time.perf_counter() - start

    result = {
        'implementation': 'pytorch',
        'torch_version': torch.__version__,
        'threads': torch.get_num_threads(),
        'batch_size': args.batch_size,
        'steps': args.steps,
        'train_images_per_second': args.steps * args.batch_size / train,
        'inference_images_per_second': args.steps * args.batch_size / infer,
        'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f'{key}: {value}')


if __name__ == '__main__':
    main()
