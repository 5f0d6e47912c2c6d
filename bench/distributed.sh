#!/usr/bin/env bash
# Data-parallel training on one machine: 1 process with every core against
# N processes of cores/N threads each (Gloo over loopback), with and without
# the all-reduce overlapped with backward. Same global batch, same data, one
# epoch each; figures from each run's metrics.jsonl.
# Usage: bench/distributed.sh [CAPSNET] [DATA] [GLOBAL_BATCH] [IMAGES]
set -euo pipefail
capsnet=${1:-./build/capsnet}
data=${2:-data/mnist}
batch=${3:-128}
images=${4:-3840}
cores=$(nproc)
nproc=${NPROC:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--data "$data" --limit "$images" --test-limit 500 --epochs 1 --seed 1)

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $cores cores"
echo "global batch $batch, $images images (one epoch of $((images / batch)) steps)"
"$capsnet" train "${common[@]}" --batch-size "$batch" --threads "$cores" --out "$out/one" >/dev/null
"$capsnet" launch --nproc "$nproc" -- train "${common[@]}" --batch-size $((batch / nproc)) \
  --threads $((cores / nproc)) --out "$out/overlap" >/dev/null 2>&1
"$capsnet" launch --nproc "$nproc" -- train "${common[@]}" --batch-size $((batch / nproc)) \
  --threads $((cores / nproc)) --no-grad-overlap --out "$out/after" >/dev/null 2>&1
python3 - "$out" "$cores" "$nproc" <<'PY'
import json, sys
out, cores, nproc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [("one", f"1 process x {cores} threads"),
        ("overlap", f"{nproc} processes x {cores // nproc} threads, all-reduce during backward"),
        ("after", f"{nproc} processes x {cores // nproc} threads, all-reduce after backward")]
base = None
print("| configuration | img/s | vs 1 process | all-reduce alone (ms) | exposed per step (ms) | hidden |")
print("|---|---|---|---|---|---|")
for name, label in rows:
    m = json.loads(open(f"{out}/{name}/metrics.jsonl").readline())
    rate = m["images_per_second"]
    base = base or rate
    if "allreduce_alone_seconds" in m:
        comm = (f"{1000 * m['allreduce_alone_seconds']:.1f} | {1000 * m['allreduce_exposed_seconds']:.1f} | "
                f"{100 * m['allreduce_hidden_fraction']:.0f}%")
    else:
        comm = "- | - | -"
    print(f"| {label} | {rate:.1f} | {rate / base:.2f} | {comm} |")
PY
