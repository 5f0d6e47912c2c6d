#!/usr/bin/env bash
# Makes the shipped model from a run of capsnet train (models/README.md):
#   models/efficient-capsnet-mnist.pt       best.pt's weights, no optimizer state
#   models/efficient-capsnet-mnist.json     the configuration capsnet export writes, for Python
#   models/efficient-capsnet-mnist.metrics.jsonl   the run's metrics, epoch by epoch
#   models/efficient-capsnet-mnist.card.json       the stored weights' test errors, the
#                                                  command, the binary that trained it, the
#                                                  commit it was shipped at and the machine
# Usage: scripts/ship-model.sh CAPSNET RUN_DIR MNIST_DIR "COMMAND"
set -euo pipefail
capsnet=$1 run=$2 mnist=$3 command=$4
out=models/efficient-capsnet-mnist
"$capsnet" export --checkpoint "$run/best.pt" --format weights --out "$out.pt"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$capsnet" export --checkpoint "$out.pt" --out "$scratch/export.pth" >/dev/null
cp "$scratch/export.json" "$out.json"
cp "$run/metrics.jsonl" "$out.metrics.jsonl"
# The stored weights' own evaluation: what ctest shipped_model requires.
"$capsnet" eval --checkpoint "$out.pt" --data "$mnist" --json >"$scratch/eval.json"
# The binary that trained it, as its checkpoint records it.
trained_by=$(/usr/bin/python3 -c "import sys, torch; print(torch.jit.load(sys.argv[1]).written_by)" "$run/best.pt" 2>/dev/null || echo unknown)
python3 - "$scratch/eval.json" "$out.metrics.jsonl" "$command" "$out.card.json" "$trained_by" <<'PY'
import json, platform, subprocess, sys
evaluation = json.load(open(sys.argv[1]))
rows = [json.loads(line) for line in open(sys.argv[2])]
best = [r for r in rows if r.get("best")][-1]  # best.pt: the last epoch marked best
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
card = {
    "model": "efficient-capsnet", "dataset": "mnist", "file": "efficient-capsnet-mnist.pt",
    "epoch": evaluation["epoch"], "epochs_trained": len(rows),
    "validation_errors": int(best["val_errors"]), "validation_size": int(best["val_size"]),
    "test_errors": evaluation["errors"], "test_size": evaluation["total"],
    "test_accuracy": evaluation["accuracy"],
    "command": sys.argv[3],
    "trained_by": sys.argv[5],
    "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True).stdout.strip(),
    "machine": f"{cpu}, {platform.machine()}",
}
assert best["epoch"] == card["epoch"], (best["epoch"], card["epoch"])
json.dump(card, open(sys.argv[4], "w"), indent=2)
print(json.dumps(card, indent=2))
PY
