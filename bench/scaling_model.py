#!/usr/bin/env python3
"""Scaling model of capsnet's data-parallel training on H100-class GPUs.

Step time on N GPUs at b images per GPU:
    t(N, b) = t_compute(b) + t_exposed(N)
    t_compute(b) = t_floor + b * flop_per_image / flops
    t_exposed(N) = ring(N, bytes that cannot overlap backward)
    ring(N, S) = 2 (N - 1) / N * S / bandwidth + 2 (N - 1) * hop_latency
Efficiency = t_compute / t. Every input is an assumption stated below (no GPU
was measured); change them on the command line, e.g. --flops 50e12.
"""
import argparse

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--gradient-bytes", type=float, default=32.86e6,
               help="fp32 gradients per step: 8,215,568 parameters (capsnet train's gradient_megabytes)")
p.add_argument("--tail-bytes", type=float, default=21.32e6,
               help="gradients that exist only when backward ends: the primary-capsule convolution's "
                    "weight and bias and conv1's (the decoder's and W's buckets overlap the "
                    "primary-capsule convolution's backward)")
p.add_argument("--flop-per-image", type=float, default=1.13e9,
               help="training FLOP per image (capsnet bench's count: 133.4 GFLOP/s at 118 img/s)")
p.add_argument("--flops", type=float, default=100e12,
               help="sustained FLOP/s of one GPU on this network's convolutions (20%% of an H100 "
                    "SXM's 495 TFLOP/s dense TF32)")
p.add_argument("--floor", type=float, default=1.5e-3,
               help="seconds per step whatever the batch: ~150 kernel launches, routing's small kernels")
p.add_argument("--nvlink", type=float, default=360e9, help="all-reduce bus bandwidth within a node (B/s)")
p.add_argument("--network", type=float, default=40e9,
               help="bus bandwidth across nodes (B/s): one 400 Gb/s InfiniBand NDR port per GPU")
p.add_argument("--hop", type=float, default=5e-6, help="latency per ring step (s)")
a = p.parse_args()


def ring(n, size):
    if n == 1:
        return 0.0
    bandwidth = a.nvlink if n <= 8 else a.network
    return 2 * (n - 1) / n * size / bandwidth + 2 * (n - 1) * a.hop


def compute(b):
    return a.floor + b * a.flop_per_image / a.flops


def efficiency(n, b):
    return compute(b) / (compute(b) + ring(n, a.tail_bytes))


print("| GPUs | all-reduce of all gradients (ms) | exposed: the tail (ms) | "
      "efficiency at b = 16 / 64 / 128 / 512 per GPU | b for 50% / 90% |")
print("|---|---|---|---|---|")
for n in (8, 64):
    effs = " / ".join(f"{100 * efficiency(n, b):.0f}%" for b in (16, 64, 128, 512))
    half = next(b for b in range(1, 1 << 20) if efficiency(n, b) >= 0.5)
    ninety = next(b for b in range(1, 1 << 20) if efficiency(n, b) >= 0.9)
    print(f"| {n} | {1000 * ring(n, a.gradient_bytes):.2f} | {1000 * ring(n, a.tail_bytes):.2f} | "
          f"{effs} | {half} / {ninety} |")

print()
print("The paper's global batch of 128, split over N GPUs:")
print()
print("| GPUs | images per GPU | step (ms) | speed-up over 1 GPU |")
print("|---|---|---|---|")
one = compute(128)
for n in (1, 2, 4, 8, 16, 32, 64):
    t = compute(128 / n) + ring(n, a.tail_bytes)
    print(f"| {n} | {128 / n:g} | {1000 * t:.2f} | {one / t:.2f}x |")
