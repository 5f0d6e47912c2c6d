#!/usr/bin/env bash
# Hostile input and lost work (issue 11), end to end: no command writes over
# its inputs, runs cannot be shared or fed other data, only the promised image
# formats are decoded, options have bounds, and kill -9 at any point of a run
# leaves it resumable to the same weights as an uninterrupted run.
# Usage: hostile_test.sh CAPSNET MNIST_DIR
set -uo pipefail

capsnet=$1
mnist=$2
source "$(dirname "$0")/test_lib.sh"

small=(--data "$mnist" --limit 96 --test-limit 32 --batch-size 16 --threads 2)
run="$work/run"
"$capsnet" train "${small[@]}" --epochs 1 --out "$run" >/dev/null 2>&1
check "a small run trains" test -s "$run/last.pt"
sum_of() { sha256sum "$1" | cut -d' ' -f1; }
ckpt_sum=$(sum_of "$run/last.pt")

# No command writes over its inputs (compared by identity, not by name).
expect_fail "export --out naming its checkpoint" "would destroy the input" \
  export --checkpoint "$run/last.pt" --out "$run/last.pt"
ln -s "$run/last.pt" "$work/link.pt"
ln "$run/last.pt" "$work/hard.pt"
expect_fail "export --out a symbolic link to its checkpoint" "would destroy the input" \
  export --checkpoint "$run/last.pt" --out "$work/link.pt"
expect_fail "export --out a hard link to its checkpoint" "would destroy the input" \
  export --checkpoint "$work/hard.pt" --out "$run/./last.pt"
cp "$run/last.pt" "$work/copy.json"
expect_fail "export's .json beside the weights naming its checkpoint" "would destroy the input" \
  export --checkpoint "$work/copy.json" --out "$work/copy.pt"
expect_fail "eval --confusion naming the checkpoint" "would destroy the input" \
  eval --checkpoint "$run/best.pt" --data "$mnist" --limit 20 --confusion "$run/best.pt"
expect_fail "eval --confusion naming a data file" "would destroy the input" \
  eval --checkpoint "$run/best.pt" --data "$mnist" --limit 20 --confusion "$mnist/t10k-labels-idx1-ubyte"
expect_fail "eval's two figures on one path" "two outputs" \
  eval --checkpoint "$run/best.pt" --data "$mnist" --limit 20 --confusion "$work/a.png" --worst 4 "$work/./a.png"
expect_fail "reconstruct --out naming the checkpoint" "would destroy the input" \
  reconstruct --checkpoint "$run/last.pt" --data "$mnist" --n 4 --errors 0 --out "$run/last.pt"
expect_fail "perturb --out naming a data file" "would destroy the input" \
  perturb --checkpoint "$run/last.pt" --data "$mnist" --index 0 --out "$mnist/t10k-images-idx3-ubyte"
expect_fail "plot --out naming the metrics" "would destroy the input" plot "$run" --out "$run/metrics.jsonl"
check "the checkpoint survived every attempt" test "$(sum_of "$run/last.pt")" = "$ckpt_sum"
check "the data survived" cmp -s "$mnist/t10k-labels-idx1-ubyte" "$mnist/t10k-labels-idx1-ubyte"

# predict --save-preprocessed: two inputs of one name, two outputs; no input overwritten.
mkdir -p "$work/a" "$work/b" "$work/pre"
"$capsnet" reconstruct --checkpoint "$run/last.pt" --data "$mnist" --n 1 --errors 0 --out "$work/a/digit.png" >/dev/null
cp "$work/a/digit.png" "$work/b/digit.png"
"$capsnet" predict --checkpoint "$run/last.pt" "$work/a/digit.png" "$work/b/digit.png" \
  --save-preprocessed "$work/pre" >/dev/null 2>&1
check "same-named inputs give two preprocessed files" test "$(ls "$work/pre" | wc -l)" -eq 2
# The first input's output would be pre/0-y_png.png: the second input.
mkdir -p "$work/pre2"
cp "$work/a/digit.png" "$work/pre2/y.png"
cp "$work/a/digit.png" "$work/pre2/0-y_png.png"
before=$(sum_of "$work/pre2/0-y_png.png")
expect_fail "predict never writes over an input" "would destroy the input" \
  predict --checkpoint "$run/last.pt" "$work/pre2/y.png" "$work/pre2/0-y_png.png" --save-preprocessed "$work/pre2"
check "the input image survived" test "$(sum_of "$work/pre2/0-y_png.png")" = "$before"

# Only the promised formats reach the decoder: a 40-byte Radiance HDR file
# once made predict loop forever (CVE-2021-42715 in Debian's stb 2.27).
printf '#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 2 +X 2\n\x02\x02\x00\x02' >"$work/evil.hdr"
timeout 60 "$capsnet" predict --checkpoint "$run/last.pt" "$work/evil.hdr" >/dev/null 2>"$work/hdr.err"
status=$?
check "predict on an HDR file ends (no hang)" test "$status" -ne 124
check "predict on an HDR file fails with the formats named" grep -q "PNG, JPEG, PGM/PPM, BMP or GIF" "$work/hdr.err"
printf '\x00\x00\x08\x03\x00\x00\x00\x00\x00\x00\x00\x1c\x00\x00\x00\x1c' >"$work/empty-idx"
expect_fail "an IDX file of zero images" "holds no images" predict --checkpoint "$run/last.pt" "$work/empty-idx"
expect_fail "/dev/zero as images" "not a regular file" predict --checkpoint "$run/last.pt" /dev/zero
expect_fail "/dev/zero as a checkpoint" "not a regular file" eval --checkpoint /dev/zero --data "$mnist"

# train --out: a directory holding someone else's files is refused unless --force.
mkdir -p "$work/theirs"
echo "precious" >"$work/theirs/metrics.jsonl"
echo "mine" >"$work/theirs/notes.txt"
expect_fail "train --out a directory with other files" "not empty" train "${small[@]}" --out "$work/theirs"
check "their metrics.jsonl survived" grep -q precious "$work/theirs/metrics.jsonl"
echo "x" >"$work/afile"
expect_fail "train --out a file" "not a directory" train "${small[@]}" --out "$work/afile"
"$capsnet" train "${small[@]}" --epochs 1 --out "$work/theirs" --force >/dev/null 2>&1
check "train --force trains there" test -s "$work/theirs/last.pt"
check "--force keeps unrelated files" grep -q mine "$work/theirs/notes.txt"

# Options with bounds from their meaning and the machine.
expect_fail "--threads 100000" "threads" train "${small[@]}" --threads 100000 --out "$work/t1"
expect_fail "--m-minus above m+" "m-minus" train "${small[@]}" --m-minus 1.5 --out "$work/t2"
expect_fail "--margin-lambda -1" "margin-lambda" train "${small[@]}" --margin-lambda -1 --out "$work/t3"
expect_fail "perturb --step nan" "step" perturb --checkpoint "$run/last.pt" --data "$mnist" --index 0 --step nan
expect_fail "eval --worst 1e9 (not read as 1)" "count from 1 to 1024" \
  eval --checkpoint "$run/last.pt" --data "$mnist" --worst 1e9 "$work/w.png"

# plot on degenerate metrics: one row whose losses differ in the last bits.
mkdir -p "$work/flat"
echo '{"epoch":1,"train_loss":100000.0,"test_loss":100000.00000000001,"train_accuracy":0.5,"test_accuracy":0.5}' \
  >"$work/flat/metrics.jsonl"
timeout 60 "$capsnet" plot "$work/flat" --out "$work/flat.png" >/dev/null 2>&1
check "plot on near-equal losses ends and writes" test -s "$work/flat.png"

# One trainer per run directory: the second names the first's PID.
"$capsnet" train --data "$mnist" --limit 4096 --test-limit 32 --threads 1 --out "$work/locked" \
  >"$work/locked.log" 2>&1 &
first=$!
for _ in $(seq 1 600); do grep -q "step" "$work/locked.log" 2>/dev/null && break; sleep 0.2; done
expect_fail "a second trainer in a run directory" "in use by another capsnet train (PID $first)" \
  train "${small[@]}" --out "$work/locked" --force
kill -9 "$first" 2>/dev/null
wait "$first" 2>/dev/null

# --resume on other data than the run recorded: refused unless --force.
mkdir -p "$work/other"
cp "$mnist"/t10k-* "$mnist/train-labels-idx1-ubyte" "$work/other/"
cp "$mnist/train-images-idx3-ubyte" "$work/other/"
printf '\xff' | dd of="$work/other/train-images-idx3-ubyte" bs=1 seek=500 conv=notrunc 2>/dev/null
expect_fail "resume on other data" "other data" train --resume "$run" --epochs 2 --data "$work/other"
"$capsnet" train --resume "$run" --epochs 2 --data "$work/other" --force >/dev/null 2>&1
check "resume --force on other data goes on" test "$(wc -l <"$run/metrics.jsonl")" -eq 2

# kill -9 at many points of a run, each time resuming from what is on disk:
# the end is bit for bit the uninterrupted run's, metrics included.
ref="$work/ref"
start=$(date +%s.%N)
"$capsnet" train "${small[@]}" --epochs 3 --out "$ref" >/dev/null 2>&1
took=$(python3 -c "print($(date +%s.%N) - $start)")
"$capsnet" export --checkpoint "$ref/last.pt" --out "$work/ref.pth" >/dev/null
killed="$work/killed"
kills=0
# Each attempt is killed after a part of the whole run's time: short ones first
# (start-up, the first steps), then long ones (mid-step, mid-evaluation, mid-write)
# that let the run move on (a checkpoint is written at each epoch's end).
for part in 0.1 0.15 0.2 0.25 0.3 0.35 0.45 0.5 0.55 0.6 0.4 0.5; do
  delay=$(python3 -c "print($took * $part)")
  if [ -s "$killed/last.pt" ]; then
    "$capsnet" train --resume "$killed" --data "$mnist" --threads 2 >/dev/null 2>&1 &
  else
    "$capsnet" train "${small[@]}" --epochs 3 --out "$killed" --force >/dev/null 2>&1 &
  fi
  pid=$!
  sleep "$delay"
  if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
  wait "$pid" 2>/dev/null
done
# Then to the end, without a kill.
if [ -s "$killed/last.pt" ]; then
  "$capsnet" train --resume "$killed" --data "$mnist" --threads 2 >/dev/null 2>&1
else
  "$capsnet" train "${small[@]}" --epochs 3 --out "$killed" --force >/dev/null 2>&1
fi
check "killed at least 6 times ($kills)" test "$kills" -ge 6
"$capsnet" export --checkpoint "$killed/last.pt" --out "$work/killed.pth" >/dev/null
check "killed and resumed run ends with the uninterrupted weights" cmp -s "$work/ref.pth" "$work/killed.pth"
check "one metrics row per epoch after the kills" test "$(wc -l <"$killed/metrics.jsonl")" -eq 3
check "the metrics agree with the uninterrupted run's" test "$(python3 -c "
import json
a = [json.loads(l) for l in open('$ref/metrics.jsonl')]
b = [json.loads(l) for l in open('$killed/metrics.jsonl')]
keys = ('epoch', 'train_loss', 'test_loss', 'test_accuracy')
print(all(x[k] == y[k] for x, y in zip(a, b) for k in keys) and len(a) == len(b))")" = True

echo "hostile: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
