#!/usr/bin/env python3
"""Prints capsnet's and PyTorch's benchmark figures side by side, with ratios.
Usage: compare.py CAPSNET_JSON PYTORCH_JSON [PYTORCH_TUNED_JSON]
(each the --json output of one run; the tuned run is PyTorch with the same
glibc malloc settings capsnet uses, given through MALLOC_* variables)."""
import json
import sys

ours = json.load(open(sys.argv[1]))
baselines = [('PyTorch', json.load(open(sys.argv[2])))]
if len(sys.argv) > 3:
    baselines.append(('PyTorch+malloc', json.load(open(sys.argv[3]))))

print(f"batch {ours['batch_size']}, {ours['threads']} threads, capsnet routing {ours['routing']}, "
      f"BLAS core {ours['blas_core']}, PyTorch {baselines[0][1]['torch_version']}")
header = f"{'':13}{'capsnet':>9}" + ''.join(f"{name:>16}{'ratio':>7}" for name, _ in baselines)
print(header)
for key, label in [('train_images_per_second', 'train img/s'),
                   ('inference_images_per_second', 'infer img/s')]:
    row = f"{label:13}{ours[key]:9.1f}"
    for _, theirs in baselines:
        row += f"{theirs[key]:16.1f}{ours[key] / theirs[key]:6.2f}x"
    print(row)
row = f"{'peak MiB':13}{ours['peak_rss_mib']:9.0f}"
for _, theirs in baselines:
    row += f"{theirs['peak_rss_mib']:16.0f}{'':7}"
print(row)
print(f"capsnet training: {ours['train_gflops']:.1f} GFLOP/s, "
      f"{100 * ours['train_fraction_of_probe']:.0f}% of the fp32 matrix-product probe "
      f"({ours['matmul_probe_gflops']:.1f} GFLOP/s)")
