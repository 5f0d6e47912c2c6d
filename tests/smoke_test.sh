#!/usr/bin/env bash
# make test-fast's end-to-end smoke: a short training run, its evaluation,
# a prediction and a resume, through the binary (about 30 s).
# Usage: smoke_test.sh CAPSNET MNIST_DIR
set -uo pipefail
capsnet=$1
mnist=$2
source "$(dirname "$0")/test_lib.sh"

"$capsnet" train --data "$mnist" --limit 256 --test-limit 200 --epochs 1 --batch-size 32 \
  --out "$work/run" >"$work/train.log" 2>&1
check "train runs an epoch" grep -q "^epoch 1/1: train loss" "$work/train.log"
check "train writes last.pt and best.pt" test -f "$work/run/last.pt" -a -f "$work/run/best.pt"
"$capsnet" eval --checkpoint "$work/run/last.pt" --limit 200 --json >"$work/eval.json" 2>/dev/null
check "eval tests the run's 200 pictures" test "$(json_get "$work/eval.json" "j['total']")" = 200
check "eval makes the run's last test accuracy" python3 -c "
import json, sys
row = [json.loads(l) for l in open(sys.argv[1])][-1]
sys.exit(not abs(json.load(open(sys.argv[2]))['accuracy'] - row['test_accuracy']) < 1e-9)" \
  "$work/run/metrics.jsonl" "$work/eval.json"
"$capsnet" train --resume "$work/run" --epochs 2 >"$work/resume.log" 2>&1
check "--resume adds an epoch" test "$(wc -l <"$work/run/metrics.jsonl")" -eq 2

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
