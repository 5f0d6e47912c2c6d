#!/usr/bin/env python3
"""A run's metrics.jsonl as a Markdown table of its epochs, and the epochs at
which the test accuracy first reached each threshold.

Usage: scripts/metrics_table.py RUN_DIR [THRESHOLD% ...]   (default 99.5 99.6 99.7)
"""
import json
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rows = [json.loads(line) for line in open(sys.argv[1] + "/metrics.jsonl") if line.strip()]
    thresholds = [float(t) for t in sys.argv[2:]] or [99.5, 99.6, 99.7]
    print("| epoch | test accuracy | errors | train loss | lr | epoch time | images/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        minutes, seconds = divmod(round(r["seconds"]), 60)
        print(f"| {r['epoch']} | {100 * r['test_accuracy']:.2f}% | {r['test_errors']} | "
              f"{r['train_loss']:.4f} | {r['lr']:.2e} | {minutes}m{seconds:02d}s | "
              f"{r['images_per_second']:.0f} |")
    best = max(rows, key=lambda r: r["test_accuracy"])
    print(f"\nBest: {100 * best['test_accuracy']:.2f}% at epoch {best['epoch']} "
          f"({best['test_errors']} errors).")
    for t in thresholds:
        first = next((r["epoch"] for r in rows if 100 * r["test_accuracy"] >= t - 1e-9), None)
        print(f"{t}%: " + (f"first reached at epoch {first}." if first else "not reached yet."))


if __name__ == "__main__":
    main()
