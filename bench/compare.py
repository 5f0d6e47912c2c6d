#!/usr/bin/env python3
"""Prints capsnet's and PyTorch's benchmark figures side by side, with ratios.
Usage: compare.py CAPSNET_JSON PYTORCH_JSON [PYTORCH_TUNED_JSON [CAPSNET_BF16_JSON]]
(each the --json output of one run; the tuned run is PyTorch with the same
glibc malloc settings capsnet uses, given through MALLOC_* variables; the
bf16 run is capsnet bench --precision bf16, which falls back to fp32 on a CPU
without bf16: the bf16 column then says why instead of repeating fp32)."""
import json
import sys

ours = json.load(open(sys.argv[1]))
baselines = [('PyTorch', json.load(open(sys.argv[2])))]
if len(sys.argv) > 3:
    baselines.append(('PyTorch+malloc', json.load(open(sys.argv[3]))))
bf16 = json.load(open(sys.argv[4])) if len(sys.argv) > 4 else None
bf16_ran = bf16 is not None and bf16['precision'] == 'bf16'

print(f"machine: {ours['cpu']}")
print(f"capsnet kernels {ours['kernel_isa']}; BLAS core {ours['blas_core']}; "
      f"LibTorch {ours['libtorch_version']}; PyTorch {baselines[0][1]['torch_version']}")
print(f"fp32 primary-capsule convolution: {ours['conv_path']}")
print(f"routing: {ours['routing_path']}")
if bf16_ran:
    print(f"bf16 primary-capsule convolution: {bf16['conv_path']}")
elif bf16 is not None:
    print(f"bf16: unavailable ({bf16['bf16_unavailable_reason']})")
print(f"batch {ours['batch_size']}, {ours['threads']} threads, {ours['steps']} timed steps")
header = f"{'':13}{'capsnet':>9}" + ''.join(f"{name:>16}{'ratio':>7}" for name, _ in baselines)
if bf16_ran:
    header += f"{'capsnet bf16':>14}{'vs fp32':>8}" + f"{'vs ' + baselines[-1][0]:>20}"
print(header)
for key, label in [('train_images_per_second', 'train img/s'),
                   ('inference_images_per_second', 'infer img/s')]:
    row = f"{label:13}{ours[key]:9.1f}"
    for _, theirs in baselines:
        row += f"{theirs[key]:16.1f}{ours[key] / theirs[key]:6.2f}x"
    if bf16_ran:
        row += f"{bf16[key]:14.1f}{bf16[key] / ours[key]:7.2f}x{bf16[key] / baselines[-1][1][key]:19.2f}x"
    print(row)
row = f"{'peak MiB':13}{ours['peak_rss_mib']:9.0f}"
for _, theirs in baselines:
    row += f"{theirs['peak_rss_mib']:16.0f}{'':7}"
if bf16_ran:
    row += f"{bf16['peak_rss_mib']:14.0f}"
print(row)
print(f"capsnet fp32 training: {ours['train_gflops']:.1f} GFLOP/s, "
      f"{100 * ours['train_fraction_of_probe']:.0f}% of the fp32 matrix-product probe "
      f"({ours['matmul_probe_gflops']:.1f} GFLOP/s)")
if bf16_ran:
    print(f"capsnet bf16 training: {bf16['train_gflops']:.1f} GFLOP/s, "
          f"{100 * bf16['train_fraction_of_probe']:.0f}% of the bf16 matrix-product probe "
          f"({bf16['bf16_matmul_probe_gflops']:.1f} GFLOP/s, {bf16['cpu_bf16']})")

# Where a training step goes, stage by stage (capsnet bench's stage hooks:
# "X" is its forward, "X (backward)" the gradients that reach its input), in
# fp32 and, where it ran, bf16.
stages = ours.get('stage_seconds_per_step', {})
if stages:
    print("training step, seconds per stage:")
    header = f"  {'stage':31}{'fp32':>8}"
    if bf16_ran:
        header += f"{'bf16':>8}{'fp32/bf16':>11}"
    print(header)
    theirs = bf16.get('stage_seconds_per_step', {}) if bf16_ran else {}
    for name, seconds in sorted(stages.items(), key=lambda item: -item[1]):
        row = f"  {name:31}{seconds:8.3f}"
        if bf16_ran and name in theirs:
            row += f"{theirs[name]:8.3f}{seconds / max(theirs[name], 1e-9):10.2f}x"
        print(row)
