#!/usr/bin/env bash
# Elastic training on one machine: train --resume-if-exists (a fresh start,
# a resumed one, options that differ, what a start that died before its first
# checkpoint left, a second writer), and a rank killed mid-epoch and before
# the first checkpoint, recovered by capsnet launch --max-restarts and by
# torchrun --max_restarts, ending with an uninterrupted run's weights.
# Usage: elastic_test.sh CAPSNET_BINARY MNIST_DIR
set -uo pipefail
capsnet=$1
data=$2
source "$(dirname "$0")/test_lib.sh"

# --primary-types 8: a quarter of the paper's primary capsules, 3x faster steps.
D=(--data "$data" --test-limit 200 --seed 3 --threads 1 --limit 640 --primary-types 8)
T=("${D[@]}" --batch-size 32 --epochs 3)

# kill_rank PARENT_PID RANK: SIGKILL that rank once it runs; prints when.
kill_rank() {
  local victim
  wait_for 60 test -n "$(rank_pid "$1" "$2")"
  victim=$(rank_pid "$1" "$2")
  kill -9 "$victim" && echo "  rank $2 (PID $victim) killed"
}

echo "== the uninterrupted run: 2 processes x batch 32, 3 epochs"
"$capsnet" launch --nproc 2 -- train "${T[@]}" --out "$work/straight" >/dev/null 2>"$work/straight.err"
check "the uninterrupted run trains" test $? -eq 0 || cat "$work/straight.err" >&2

echo "== capsnet launch --max-restarts: rank 1 killed mid-epoch 2"
"$capsnet" launch --nproc 2 --max-restarts 2 -- train "${T[@]}" --resume-if-exists \
  --out "$work/mid" >"$work/mid.out" 2>"$work/mid.err" &
launcher=$!
wait_checkpoint "$work/mid" 1
sleep 0.5
kill_rank "$launcher" 1
wait "$launcher"
check "launch recovers and exits 0" test $? -eq 0 || tail -20 "$work/mid.err" >&2
check "launch says it restarted the group" grep -q "restarting the group (restart 1 of 2)" "$work/mid.err"
check "the restarted run resumed from last.pt" grep -q "resuming .*/mid at epoch [23], step 0" "$work/mid.out"
check "each epoch once in metrics.jsonl" test "$(wc -l <"$work/mid/metrics.jsonl")" -eq 3
check "the recovered weights equal the uninterrupted run's" weights_close "$work/mid/last.pt" "$work/straight/last.pt" 0 0
check "the same test errors" test "$(metric "$work/mid" 3 test_errors)" = "$(metric "$work/straight" 3 test_errors)"

echo "== capsnet launch --max-restarts: rank 1 killed before the first checkpoint"
"$capsnet" launch --nproc 2 --max-restarts 1 -- train "${T[@]}" --resume-if-exists \
  --out "$work/early" >"$work/early.out" 2>"$work/early.err" &
launcher=$!
wait_for 60 test -f "$work/early/config.json"
kill_rank "$launcher" 1
wait "$launcher"
check "launch recovers and exits 0" test $? -eq 0 || tail -20 "$work/early.err" >&2
check "the restart started afresh in the half-made directory" test "$(grep -c 'resuming' "$work/early.out")" -eq 0
check "each epoch once in metrics.jsonl" test "$(wc -l <"$work/early/metrics.jsonl")" -eq 3
check "the weights equal the uninterrupted run's" weights_close "$work/early/last.pt" "$work/straight/last.pt" 0 0

echo "== restarts run out"
mkdir -p "$work/foreign" && touch "$work/foreign/notes.txt"
"$capsnet" launch --nproc 2 --max-restarts 1 -- train "${T[@]}" --resume-if-exists \
  --out "$work/foreign" >/dev/null 2>"$work/foreign.err"
check "launch fails after the last restart" test $? -ne 0
check "and says so" grep -q "the group failed 2 times; no restarts left (--max-restarts 1)" "$work/foreign.err"
check "a directory with other files is not replaced" grep -q "is not empty" "$work/foreign.err"
check "the other files are kept" test -f "$work/foreign/notes.txt"

echo "== torchrun --max_restarts: rank 1 killed mid-epoch 2"
if /usr/bin/python3 -c 'import torch.distributed.run' 2>/dev/null; then
  port=$(free_port)
  # --redirects/--tee 1: torch 1.13's launcher fails on Python 3.11 with its default of 0.
  /usr/bin/python3 -m torch.distributed.run --nproc_per_node 2 --max_restarts 2 \
    --monitor_interval 1 --master_port "$port" --redirects 1 --tee 1 --no_python \
    "$capsnet" train "${T[@]}" --resume-if-exists --out "$work/torchrun" >"$work/torchrun.out" 2>&1 &
  agent=$!
  wait_checkpoint "$work/torchrun" 1
  sleep 0.5
  kill_rank "$agent" 1
  wait "$agent"
  check "torchrun recovers and exits 0" test $? -eq 0 || tail -20 "$work/torchrun.out" >&2
  check "torchrun started the group twice" test "$(grep -c 'run directory:' "$work/torchrun.out")" -eq 2
  check "the restarted run resumed from last.pt" grep -q "resuming .*/torchrun at epoch [23], step 0" "$work/torchrun.out"
  check "each epoch once in metrics.jsonl" test "$(wc -l <"$work/torchrun/metrics.jsonl")" -eq 3
  check "the recovered weights equal the uninterrupted run's" weights_close "$work/torchrun/last.pt" "$work/straight/last.pt" 0 0
else
  echo "SKIPPED: torchrun (Debian's python3-torch) is not installed"
fi

echo "== --resume-if-exists alone"
"$capsnet" train "${D[@]}" --batch-size 32 --epochs 1 --resume-if-exists --out "$work/one" >"$work/one.out" 2>&1
check "starts a new run" test $? -eq 0
"$capsnet" train "${D[@]}" --batch-size 32 --epochs 2 --resume-if-exists --out "$work/one" >"$work/one2.out" 2>&1
check "the same command resumes it (--epochs may change)" grep -q "resuming .*/one at epoch 2, step 0" "$work/one2.out"
check "and ends after epoch 2" test "$(wc -l <"$work/one/metrics.jsonl")" -eq 2
expect_fail "a per-process batch that differs" "--batch-size differs from the run in" \
  train "${D[@]}" --batch-size 16 --resume-if-exists --out "$work/one"
expect_fail "another learning rate" "--lr differs from the run in" \
  train "${T[@]}" --lr 0.01 --resume-if-exists --out "$work/one"
expect_fail "another preset" "--preset is seed but the run in" \
  train "${T[@]}" --preset seed --resume-if-exists --out "$work/one"
expect_fail "without --out" "requires --out" train "${T[@]}" --resume-if-exists
expect_fail "with --resume" "excludes --resume" train --resume "$work/one" --resume-if-exists
mkdir -p "$work/half"
cp "$work/one/config.json" "$work/half/" && head -1 "$work/one/metrics.jsonl" >"$work/half/metrics.jsonl"
: >"$work/half/.lock" && : >"$work/half/last.pt.0123456789abcdef.tmp"
"$capsnet" train "${D[@]}" --batch-size 32 --epochs 1 --resume-if-exists --out "$work/half" >/dev/null 2>"$work/half.err"
check "a start that died before its first checkpoint is replaced" test $? -eq 0 || cat "$work/half.err" >&2
check "with this run's one metrics row" test "$(wc -l <"$work/half/metrics.jsonl")" -eq 1

echo "== a restart never makes a second writer"
"$capsnet" train "${D[@]}" --epochs 20 --resume-if-exists --out "$work/busy" >/dev/null 2>&1 &
first=$!
wait_for 60 test -f "$work/busy/config.json"
expect_fail "a second start while the first runs" "is in use by another capsnet train (PID $first)" \
  train "${D[@]}" --epochs 20 --resume-if-exists --out "$work/busy"
kill -9 "$first"
wait "$first" 2>/dev/null
check "the first run's files are untouched" test -f "$work/busy/config.json"

echo "elastic tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
