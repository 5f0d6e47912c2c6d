#!/usr/bin/env bash
# The generated data sets end to end on a tiny budget: MultiMNIST (36x36, two
# labels per image, both-right accuracy), expanded MNIST and its affine test
# (40x40), trained and evaluated through the command line.
# Usage: experiments_cli_test.sh CAPSNET_BINARY MNIST_DIR
set -uo pipefail
capsnet=$1
data=$2
source "$(dirname "$0")/test_lib.sh"

tiny=(--data "$data" --limit 96 --test-limit 40 --epochs 1 --batch-size 32 --threads 2 --seed 2)
for set in multimnist expanded-mnist affine-mnist; do
  "$capsnet" train --dataset "$set" "${tiny[@]}" --out "$work/$set" >"$work/$set.out" 2>&1
  check "$set trains" test $? -eq 0 || tail -3 "$work/$set.out" >&2
  size=$([ "$set" = multimnist ] && echo 36 || echo 40)
  check "$set: the model takes ${size}x$size images" test "$(json_get "$work/$set/config.json" "j['model']['image_size']")" = "$size"
  check "$set: a test row" test "$(python3 -c "import json; print(json.loads(open('$work/$set/metrics.jsonl').readline())['test_size'])")" = 40
  "$capsnet" eval --checkpoint "$work/$set/last.pt" --data "$data" --limit 40 >"$work/$set.eval" 2>&1
  check "$set evaluates" grep -q "test accuracy" "$work/$set.eval"
done
# The same test examples every time: evaluation is deterministic across runs.
"$capsnet" eval --checkpoint "$work/multimnist/last.pt" --data "$data" --limit 40 >"$work/again.eval" 2>&1
check "the generated test set is fixed" test "$(grep 'test accuracy' "$work/again.eval" | cut -d, -f1-2)" = "$(grep 'test accuracy' "$work/multimnist.eval" | cut -d, -f1-2)"
check "the metrics row of MultiMNIST counts both digits" grep -q "per-class accuracy" "$work/multimnist.eval"
# Affine test against the expanded one: two test sets of one trained model.
"$capsnet" eval --checkpoint "$work/affine-mnist/last.pt" --dataset expanded-mnist --data "$data" --limit 40 >"$work/expanded.eval" 2>&1
check "a model trained on expanded MNIST evaluates on either test set" grep -q "test accuracy" "$work/expanded.eval"
expect_fail "a 36x36 model on 28x28 data" "the model takes 36-pixel images but mnist's are 28" \
  eval --checkpoint "$work/multimnist/last.pt" --dataset mnist --data "$data" --limit 40

# Table 1's baseline CNN through the same commands.
"$capsnet" train --model baseline-cnn --data "$data" --limit 64 --test-limit 32 --epochs 1 \
  --batch-size 32 --threads 2 --out "$work/baseline" >"$work/baseline.out" 2>&1
check "the baseline CNN trains" grep -q "baseline CNN (35445522 parameters)" "$work/baseline.out"
check "its config says so" test "$(json_get "$work/baseline/config.json" "j['model_kind']")" = "baseline-cnn"
"$capsnet" eval --checkpoint "$work/baseline/last.pt" --data "$data" --limit 32 >"$work/baseline.eval" 2>&1
check "the baseline CNN evaluates" grep -q "test accuracy" "$work/baseline.eval"
"$capsnet" train --resume "$work/baseline" --epochs 2 --threads 2 >/dev/null 2>&1
check "and resumes" test "$(wc -l <"$work/baseline/metrics.jsonl")" -eq 2
expect_fail "export needs capsules" "works on CapsNet checkpoints only; this one holds a baseline-cnn" \
  export --checkpoint "$work/baseline/last.pt" --out "$work/b.pth"
expect_fail "so does predict" "works on CapsNet checkpoints only" predict \
  --checkpoint "$work/baseline/last.pt" "$data/t10k-images-idx3-ubyte"
expect_fail "--model cannot change on resume" "cannot change when resuming" train \
  --resume "$work/baseline" --model capsnet
expect_fail "an unknown model" "'resnet' is not a known model; expected capsnet or baseline-cnn" \
  train --model resnet --out "$work/y"

echo "experiments cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
