#!/usr/bin/env python3
"""Prints capsnet's and PyTorch's benchmark figures side by side, with ratios.
Usage: compare.py CAPSNET_JSON PYTORCH_JSON (each the --json output of one run)."""
import json
import sys

ours = json.load(open(sys.argv[1]))
theirs = json.load(open(sys.argv[2]))
print(f"batch {ours['batch_size']}, {ours['threads']} threads, capsnet routing: {ours['routing']}, "
      f"BLAS core {ours['blas_core']}")
print(f"{'':12}{'capsnet':>12}{'PyTorch ' + theirs['torch_version']:>22}{'ratio':>8}")
for key, label in [('train_images_per_second', 'train img/s'),
                   ('inference_images_per_second', 'infer img/s')]:
    print(f"{label:12}{ours[key]:12.1f}{theirs[key]:22.1f}{ours[key] / theirs[key]:8.2f}x")
print(f"{'peak MiB':12}{ours['peak_rss_mib']:12.0f}{theirs['peak_rss_mib']:22.0f}")
print(f"capsnet training: {ours['train_gflops']:.1f} GFLOP/s, "
      f"{100 * ours['train_fraction_of_probe']:.0f}% of the fp32 matrix-product probe "
      f"({ours['matmul_probe_gflops']:.1f} GFLOP/s)")
