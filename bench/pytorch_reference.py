#!/usr/bin/env python3
"""The seed's CapsNet (or Efficient-CapsNet) in plain PyTorch, timed like `capsnet bench`.

Same shapes, batch and step as the C++ benchmark: forward, margin loss plus
0.0005 x reconstruction loss, backward, Adam. The model and losses are the
seed's (labml_nn's Router: einsum for u_hat, softmax over dim 1, W ~ N(0, 1);
unsquared margin loss, MSE); the work per step is the same as the paper's.
--routing fused puts torch.ops.capsnet.dynamic_routing (python/capsnet, the
build's libcapsnet_ops.so) in place of the seed's routing; the rest is unchanged.
--model efficient-capsnet times Efficient-CapsNet written here in plain PyTorch
(the C++ model's layers and the authors' recipe's loss: margin loss plus 0.392
x mean squared reconstruction error), at its published batch of 16.
--compile wraps the model in torch.compile(mode="reduce-overhead") (PyTorch 2:
Inductor, with CUDA graphs on a GPU); the optimizer step stays eager.
Run with Debian's python3-torch:
    /usr/bin/python3 bench/pytorch_reference.py --batch-size 128 --steps 5 --json
"""
import argparse
import json
import resource
import time

import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'python'))
from capsnet.models import CapsNet, SEED_CONFIG  # noqa: E402  the seed's model


def loss_of(lengths, recon, data, labels):
    t = torch.eye(10, device=lengths.device)[labels]
    margin = (t * F.relu(0.9 - lengths) + 0.5 * (1 - t) * F.relu(lengths - 0.1)).sum(-1).mean()
    return margin + 0.0005 * F.mse_loss(recon, data)


class EfficientCapsNetReference(torch.nn.Module):
    """Efficient-CapsNet in plain PyTorch: the C++ model's layers (4 conv + ReLU + BN,
    depthwise primary capsules, self-attention routing), no torch.ops.capsnet."""

    def __init__(self, classes=10, dim=16, primary_dim=8, eps=1e-20):
        super().__init__()
        layers, channels = [], 1
        for width, kernel, stride in ((32, 5, 1), (64, 3, 1), (64, 3, 1), (128, 3, 2)):
            layers += [torch.nn.Conv2d(channels, width, kernel, stride=stride), torch.nn.ReLU(),
                       torch.nn.BatchNorm2d(width, eps=1e-3, momentum=0.01)]
            channels = width
        self.stem = torch.nn.Sequential(*layers)
        self.primary = torch.nn.Conv2d(128, 128, 9, groups=128)
        self.primary_dim, self.eps = primary_dim, eps
        n_in = 128 // primary_dim
        self.weight = torch.nn.Parameter(torch.randn(n_in, classes, primary_dim, dim) * 0.1)
        self.bias = torch.nn.Parameter(torch.zeros(n_in, classes))
        self.decoder = torch.nn.Sequential(
            torch.nn.Linear(classes * dim, 512), torch.nn.ReLU(), torch.nn.Linear(512, 1024),
            torch.nn.ReLU(), torch.nn.Linear(1024, 784), torch.nn.Sigmoid())

    def squash(self, s):
        norm = s.norm(dim=-1, keepdim=True)
        return (1 - 1 / (torch.exp(norm) + self.eps)) * s / (norm + self.eps)

    def capsules(self, data):
        x = self.primary(self.stem(data))
        u = self.squash(x.reshape(x.shape[0], -1, self.primary_dim))
        u_hat = torch.einsum('ijnm,bin->bijm', self.weight, u)  # [B, N, K, D]
        logits = torch.einsum('bijd,bjd->bij', u_hat, u_hat.sum(1)) / u_hat.shape[-1] ** 0.5
        c = torch.softmax(logits, dim=2) + self.bias
        return self.squash(torch.einsum('bij,bijd->bjd', c, u_hat))

    def forward(self, data, labels):
        v = self.capsules(data)
        masked = v * torch.eye(v.shape[1], device=v.device)[labels].unsqueeze(-1)
        return v.norm(dim=-1), self.decoder(masked.flatten(1)).view_as(data)


def efficient_loss_of(lengths, recon, data, labels):
    t = torch.eye(10, device=lengths.device)[labels]
    margin = (t * F.relu(0.9 - lengths) ** 2 + 0.5 * (1 - t) * F.relu(lengths - 0.1) ** 2).sum(-1)
    return margin.mean() + 0.392 * F.mse_loss(recon, data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--steps', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--threads', type=int, default=0, help='0: every core')
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--routing', choices=['reference', 'fused'], default='reference',
                        help="the seed's routing (reference) or torch.ops.capsnet's (fused)")
    parser.add_argument('--no-inference', action='store_true', help='time training only')
    parser.add_argument('--model', choices=['capsnet', 'efficient-capsnet'], default='capsnet')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile(mode="reduce-overhead") the model (PyTorch 2)')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    else:
        torch.set_num_threads(os.cpu_count())
    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.model == 'capsnet':
        model, step_loss = CapsNet(SEED_CONFIG, routing=args.routing).to(device), loss_of
    else:
        model, step_loss = EfficientCapsNetReference().to(device), efficient_loss_of
    run = model
    if args.compile:
        if not hasattr(torch, 'compile'):
            sys.exit(f'--compile needs PyTorch 2 (torch.compile); this is {torch.__version__}')
        run = torch.compile(model, mode='reduce-overhead')
    adam = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.rand(args.batch_size, 1, 28, 28).to(device)
    labels = torch.randint(10, (args.batch_size,)).to(device)

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize()

    train = 0.0
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        lengths, recon = run(data, labels)
        loss = step_loss(lengths, recon, data, labels)
        adam.zero_grad()
        loss.backward()
        adam.step()
        sync()
        if step >= args.warmup:
            train += time.perf_counter() - start

    infer = 0.0
    model.eval()
    with torch.no_grad():
        for step in range(0 if args.no_inference else args.warmup + args.steps):
            start = time.perf_counter()
            model.capsules(data).norm(dim=-1).argmax(-1).sum().item()
            if step >= args.warmup:
                infer += time.perf_counter() - start

    result = {
        'implementation': ('pytorch' if args.routing == 'reference' else 'pytorch+capsnet-op') +
                          ('+compile' if args.compile else ''),
        'model': args.model,
        'compiled': args.compile,
        'routing': args.routing,
        'torch_version': torch.__version__,
        'threads': torch.get_num_threads(),
        'device': str(device),
        'batch_size': args.batch_size,
        'steps': args.steps,
        'train_images_per_second': args.steps * args.batch_size / train,
        'inference_images_per_second': args.steps * args.batch_size / infer if infer else None,
        'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f'{key}: {value}')


if __name__ == '__main__':
    main()
