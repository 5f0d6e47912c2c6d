#!/usr/bin/env bash
# capsnet train --time-limit: stops at an epoch boundary with last.pt written
# and exit 0, resumes to the weights of an uninterrupted run; a limit shorter
# than the first epoch stops mid-epoch, resumably too.
# Usage: time_limit_test.sh CAPSNET MNIST_DIR
set -uo pipefail
capsnet=$1
mnist=$2
source "$(dirname "$0")/test_lib.sh"

small=(--data "$mnist" --limit 256 --test-limit 100 --batch-size 32 --seed 5 --threads 2)

# Epochs of this size take about 2 s here. A budget of many epochs' worth
# stops somewhere after the first, and never starts one it cannot finish.
start=$(date +%s.%N)
"$capsnet" train "${small[@]}" --epochs 1000 --time-limit 20 --out "$work/run" >"$work/run.out" 2>&1
status=$?
took=$(python3 -c "print(round($(date +%s.%N) - $start, 1))")
check "a time-limited run exits 0 ($status)" test "$status" -eq 0
check "it says where it stopped" grep -q "time limit of 20 s reached: stopped after epoch [0-9]* of 1000" "$work/run.out"
epochs=$(sed -n 's/.*stopped after epoch \([0-9]*\) of 1000.*/\1/p' "$work/run.out")
echo "stopped after ${epochs:-?} epochs in $took s"
check "it trained at least 1 epoch and far fewer than 1000 (${epochs:-none})" test "${epochs:-0}" -ge 1 -a "${epochs:-1000}" -lt 1000
check "one metrics row per finished epoch" test "$(wc -l <"$work/run/metrics.jsonl")" -eq "${epochs:-0}"
# Start-up and exit come on top of the budget; the bound is wide for loaded machines.
check "it ended near its budget ($took s for 20 s)" python3 -c "import sys; sys.exit(0 if $took < 20 + 60 else 1)"
check "it says how to go on" grep -q "continue with: capsnet train --resume $work/run" "$work/run.out"

# Resumed to one more epoch: the weights of a run that was never stopped.
total=$(( ${epochs:-1} + 1 ))
"$capsnet" train --resume "$work/run" --epochs "$total" >"$work/resume.out" 2>&1
check "the resumed run ends normally" grep -q "^done: best test accuracy" "$work/resume.out"
"$capsnet" train "${small[@]}" --epochs "$total" --out "$work/ref" >/dev/null 2>&1
"$capsnet" export --checkpoint "$work/run/last.pt" --out "$work/run.pth" >/dev/null
"$capsnet" export --checkpoint "$work/ref/last.pt" --out "$work/ref.pth" >/dev/null
check "stopped by the limit and resumed = never stopped (bit for bit)" cmp -s "$work/run.pth" "$work/ref.pth"

# A budget shorter than the first epoch: no epoch to judge by, so it stops
# mid-epoch with a checkpoint, and exits 0.
"$capsnet" train "${small[@]}" --epochs 2 --time-limit 0.5 --out "$work/short" >"$work/short.out" 2>&1
status=$?
check "a budget shorter than an epoch exits 0 ($status)" test "$status" -eq 0
check "it stops mid-epoch and says so" grep -q "stopped mid-epoch at epoch 1, step" "$work/short.out"
check "with a checkpoint" test -s "$work/short/last.pt"
"$capsnet" train --resume "$work/short" >/dev/null 2>&1
"$capsnet" export --checkpoint "$work/short/last.pt" --out "$work/short.pth" >/dev/null
"$capsnet" train "${small[@]}" --epochs 2 --out "$work/ref2" >/dev/null 2>&1
"$capsnet" export --checkpoint "$work/ref2/last.pt" --out "$work/ref2.pth" >/dev/null
check "resumed from mid-epoch = never stopped (bit for bit)" cmp -s "$work/short.pth" "$work/ref2.pth"

expect_fail "a negative budget is refused" "time-limit" train "${small[@]}" --time-limit -1 --out "$work/neg"
expect_fail "a non-finite budget is refused" "time-limit" train "${small[@]}" --time-limit nan --out "$work/nan"

echo "time limit: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
