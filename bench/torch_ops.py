#!/usr/bin/env python3
"""The seed's PyTorch CapsNet with its own routing against the same model with
torch.ops.capsnet.dynamic_routing: training images/s and peak resident memory
at batch 128 and 512, and the largest batch each fits in 8 GiB.

Each configuration runs bench/pytorch_reference.py in a process of its own
(peak RSS is the process's). The largest batch in 8 GiB comes from the line
through the two measured peaks, and is then run once (one step) to measure
its peak. Run with Debian's python3-torch, after building libcapsnet_ops.so:
    /usr/bin/python3 bench/torch_ops.py [--steps 3] [--json out.json]
"""
import argparse
import json
import os
import platform
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BUDGET_MIB = 8 * 1024


def measure(routing, batch, steps, warmup):
    out = subprocess.run(
        [sys.executable, os.path.join(HERE, 'pytorch_reference.py'), '--routing', routing,
         '--batch-size', str(batch), '--steps', str(steps), '--warmup', str(warmup),
         '--no-inference', '--json'], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f'pytorch_reference.py --routing {routing} --batch-size {batch}: {out.stderr}')
    return json.loads(out.stdout)


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=3)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--batches', type=int, nargs=2, default=[128, 512])
    parser.add_argument('--json', help='also write the rows here')
    args = parser.parse_args()
    rows = []
    for routing in ('reference', 'fused'):
        runs = [measure(routing, b, args.steps, args.warmup) for b in args.batches]
        (b0, r0), (b1, r1) = [(r['batch_size'], r['peak_rss_mib']) for r in runs]
        per_image = (r1 - r0) / (b1 - b0)
        largest = int((BUDGET_MIB - (r0 - per_image * b0)) / per_image)
        check = measure(routing, largest, 1, 0)
        rows.append({'routing': routing, 'runs': runs, 'mib_per_image': per_image,
                     'largest_batch_in_8_gib': largest, 'its_peak_rss_mib': check['peak_rss_mib']})
    print(f'{cpu_name()}, {rows[0]["runs"][0]["threads"]} threads, torch {rows[0]["runs"][0]["torch_version"]}, '
          f'training step of the seed\'s CapsNet (forward, loss, backward, Adam), {args.steps} steps after {args.warmup}')
    print()
    print('| routing | batch | training images/s | peak RSS | largest batch in 8 GiB (its peak RSS) |')
    print('|---|---|---|---|---|')
    for row in rows:
        name = "the seed's (PyTorch ops)" if row['routing'] == 'reference' else 'torch.ops.capsnet.dynamic_routing'
        for k, run in enumerate(row['runs']):
            last = (f"{row['largest_batch_in_8_gib']} ({row['its_peak_rss_mib'] / 1024:.2f} GiB)"
                    if k == 0 else '')
            print(f"| {name} | {run['batch_size']} | {run['train_images_per_second']:.1f} | "
                  f"{run['peak_rss_mib'] / 1024:.2f} GiB | {last} |")
    ref, fused = rows
    for k, batch in enumerate(args.batches):
        speed = fused['runs'][k]['train_images_per_second'] / ref['runs'][k]['train_images_per_second']
        memory = ref['runs'][k]['peak_rss_mib'] / fused['runs'][k]['peak_rss_mib']
        print(f'batch {batch}: the operator trains {speed:.2f}x as fast, in {1 / memory:.2f}x the memory')
    print(f"largest batch in 8 GiB: {ref['largest_batch_in_8_gib']} -> {fused['largest_batch_in_8_gib']} "
          f"({fused['largest_batch_in_8_gib'] / ref['largest_batch_in_8_gib']:.1f}x)")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'cpu': cpu_name(), 'rows': rows}, f, indent=1)


if __name__ == '__main__':
    main()
