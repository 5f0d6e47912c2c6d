#!/usr/bin/env bash
# Learning check: one epoch on the first 6,400 MNIST training images with the
# paper's defaults, tested on the first 2,000 test images. Measured on a 2-core
# x86-64 machine: see MEASURED below; the bound leaves a margin for run-to-run
# differences of thread scheduling and library versions.
# Usage: learning_test.sh CAPSNET MNIST_DIR
set -euo pipefail
capsnet=$1
mnist=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

MEASURED=0.9350
BOUND=0.90
"$capsnet" train --data "$mnist" --limit 6400 --test-limit 2000 --epochs 1 --seed 1 \
  --threads 2 --out "$work/run"
accuracy=$(python3 -c "import json; print(json.loads(open('$work/run/metrics.jsonl').readline())['test_accuracy'])")
echo "test accuracy $accuracy (measured $MEASURED when written; must be at least $BOUND)"
python3 -c "import sys; sys.exit(0 if $accuracy >= $BOUND else 1)" && echo "learning: 1 passed, 0 failed" || {
  echo "learning: 0 passed, 1 failed"
  exit 1
}
