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
# Figure 5: the pairs and their two reconstructions, one in red and one in green.
"$capsnet" reconstruct --checkpoint "$work/multimnist/last.pt" --data "$data" --n 8 --errors 4 \
  --search 40 --out "$work/fig5.png" >"$work/fig5.out" 2>&1
check "reconstruct draws MultiMNIST's pairs" grep -q "8 test pairs with reconstructions" "$work/fig5.out" || cat "$work/fig5.out" >&2
# This model has barely trained: its reconstructions are a dull red plus green
# everywhere, so the check is only that the 8 + 2 * 4 reconstructions of
# 72x72 pixels (36 at --scale 2) are coloured and the inputs gray.
read -r _ _ coloured < <(png_colours "$work/fig5.png")
check "Figure 5's reconstructions are in colour ($coloured pixels)" test "$coloured" -gt $((15 * 72 * 72)) -a "$coloured" -le $((16 * 72 * 72))
"$capsnet" perturb --checkpoint "$work/multimnist/last.pt" --data "$data" --index 3 --out "$work/p5.png" >"$work/p5.out" 2>&1
check "perturb takes a MultiMNIST pair" grep -q "of test image 3" "$work/p5.out"
"$capsnet" eval --checkpoint "$work/multimnist/last.pt" --data "$data" --limit 40 --worst 4 "$work/worst5.png" >"$work/worst5.out" 2>&1
check "eval --worst draws the worst pairs" grep -q "worst errors drawn" "$work/worst5.out"
expect_fail "no confusion matrix for two labels" "needs one label per image, and multimnist's images have 2" \
  eval --checkpoint "$work/multimnist/last.pt" --data "$data" --limit 40 --confusion "$work/c.png"
"$capsnet" reconstruct --checkpoint "$work/affine-mnist/last.pt" --data "$data" --n 4 --errors 0 --out "$work/r40.png" >/dev/null 2>&1
read -r w40 h40 < <(png_size "$work/r40.png")
"$capsnet" reconstruct --checkpoint "$work/affine-mnist/last.pt" --dataset expanded-mnist --data "$data" --n 4 --errors 0 --out "$work/r40e.png" >/dev/null 2>&1
check "reconstruct draws 40x40 test images (${w40}x$h40)" test "$h40" -ge $((2 * 80)) -a -s "$work/r40e.png"
expect_fail "reconstruct refuses another image size" "the model takes 40-pixel images but mnist's are 28" \
  reconstruct --checkpoint "$work/affine-mnist/last.pt" --dataset mnist --data "$data" --out "$work/r28.png"

# Affine test against the expanded one: two test sets of one trained model.
"$capsnet" eval --checkpoint "$work/affine-mnist/last.pt" --dataset expanded-mnist --data "$data" --limit 40 >"$work/expanded.eval" 2>&1
check "a model trained on expanded MNIST evaluates on either test set" grep -q "test accuracy" "$work/expanded.eval"
expect_fail "a 36x36 model on 28x28 data" "the model takes 36-pixel images but mnist's are 28" \
  eval --checkpoint "$work/multimnist/last.pt" --dataset mnist --data "$data" --limit 40

# Section 7's Fashion-MNIST, from Debian's dataset-fashion-mnist, with the defaults.
"$capsnet" train --dataset fashion-mnist --limit 96 --test-limit 40 --epochs 1 --batch-size 32 \
  --threads 2 --out "$work/fashion" >"$work/fashion.out" 2>&1
check "fashion-mnist trains" grep -q "training on 96 fashion-mnist images, testing on 40" "$work/fashion.out" || tail -3 "$work/fashion.out" >&2
"$capsnet" eval --checkpoint "$work/fashion/last.pt" --limit 40 --json >"$work/fashion.json" 2>"$work/fashion.err"
check "and evaluates on its own test set" test "$(json_get "$work/fashion.json" "j['dataset'], j['total']")" = "fashion-mnist 40"

# Table 1's baseline CNN through the same commands.
"$capsnet" train --model baseline-cnn --data "$data" --limit 64 --test-limit 32 --epochs 1 \
  --batch-size 32 --threads 2 --out "$work/baseline" >"$work/baseline.out" 2>&1
check "the baseline CNN trains" grep -q "baseline CNN (35445522 parameters)" "$work/baseline.out"
check "its config says so" test "$(json_get "$work/baseline/config.json" "j['model_name']")" = "baseline-cnn"
"$capsnet" eval --checkpoint "$work/baseline/last.pt" --data "$data" --limit 32 >"$work/baseline.eval" 2>&1
check "the baseline CNN evaluates" grep -q "test accuracy" "$work/baseline.eval"
"$capsnet" train --resume "$work/baseline" --epochs 2 --threads 2 >/dev/null 2>&1
check "and resumes" test "$(wc -l <"$work/baseline/metrics.jsonl")" -eq 2
expect_fail "export needs capsules" "capsnet export needs a PyTorch export, which model 'baseline-cnn' does not offer" \
  export --checkpoint "$work/baseline/last.pt" --out "$work/b.pth"
expect_fail "so does predict" "needs capsule lengths and poses, which model 'baseline-cnn' does not offer" predict \
  --checkpoint "$work/baseline/last.pt" "$data/t10k-images-idx3-ubyte"
expect_fail "--model cannot change on resume" "cannot change when resuming" train \
  --resume "$work/baseline" --model capsnet
expect_fail "an unknown model" "'resnet' is not a known model; expected capsnet, efficient-capsnet or baseline-cnn" \
  train --model resnet --out "$work/y"

# Table 1's five rows, two trials each, on a tiny budget; run again, it trains nothing.
t1=(experiment table1 --trials 2 --epochs 1 --limit 64 --test-limit 32 --data "$data" --threads 2 --out "$work/t1")
"$capsnet" "${t1[@]}" --batch-size 32 >"$work/t1.out" 2>&1
check "table1 runs" test $? -eq 0 || tail -5 "$work/t1.out" >&2
check "table1.md has the five rows" test "$(grep -c '^| .* ± .* | 2 | 0\.' "$work/t1/table1.md")" -eq 5
check "each trial is a run" test "$(ls -d "$work"/t1/*/trial-* | wc -l)" -eq 10
check "the baseline row is the baseline CNN" test "$(json_get "$work/t1/baseline/trial-1/config.json" "j['model_name']")" = "baseline-cnn"
check "routing 1 without reconstruction" test "$(json_get "$work/t1/capsnet-r1-norecon/trial-2/config.json" "j['model']['routing_iterations'], j['recon_weight'], j['seed']")" = "1 0.0 2"
cp "$work/t1/table1.md" "$work/t1-first.md"
"$capsnet" "${t1[@]}" --batch-size 32 >"$work/t1-again.out" 2>&1
check "a second run resumes: every trial done" test "$(grep -c '(done)' "$work/t1-again.out")" -eq 10
check "and gives the same table" cmp -s <(tail -7 "$work/t1/table1.md") <(tail -7 "$work/t1-first.md")
expect_fail "another budget in the same --out" "was trained on another budget" "${t1[@]}" --batch-size 16

# Section 5.2 on a tiny budget: two epochs of each model, both test sets each epoch.
af=(experiment affine --epochs 2 --limit 64 --test-limit 32 --batch-size 32 --data "$data" --threads 2 --out "$work/af")
"$capsnet" "${af[@]}" --baseline-max-epochs 2 >"$work/af.out" 2>&1
check "affine runs" test $? -eq 0 || tail -5 "$work/af.out" >&2
check "each model trained on expanded MNIST" test "$(json_get "$work/af/baseline/config.json" "j['dataset'], j['model_name'], j['baseline']['image_size']")" = "expanded-mnist baseline-cnn 40"
check "every epoch evaluated on the affine test set" test "$(wc -l <"$work/af/capsnet-affine.jsonl")" -eq 2 -a "$(wc -l <"$work/af/baseline-affine.jsonl")" -eq 2
# The affine column is capsnet eval's own on the affine test set (last epoch).
acc=$("$capsnet" eval --checkpoint "$work/af/capsnet/last.pt" --dataset affine-mnist --data "$data" --limit 32 --json | json_get /dev/stdin "round(100 * j['accuracy'], 6)")
check "the affine accuracy is eval's ($acc)" test "$(tail -1 "$work/af/capsnet-affine.jsonl" | json_get /dev/stdin "round(j['affine_accuracy'], 6)")" = "$acc"
check "affine.md compares them" grep -q "^| Baseline CNN, the epoch closest in expanded accuracy | [12] |" "$work/af/affine.md"
"$capsnet" "${af[@]}" --baseline-max-epochs 2 >"$work/af-again.out" 2>&1
check "a second run trains nothing" test "$(grep -c 'read back' "$work/af-again.out")" -eq 2 -a "$(grep -c 'epoch [0-9]/2' "$work/af-again.out")" -eq 0
expect_fail "affine: another budget" "was trained on another budget" experiment affine --epochs 2 --limit 48 --test-limit 32 --batch-size 32 --data "$data" --threads 2 --out "$work/af"
# With room for a third epoch, the baseline takes it only when it is still
# below CapsNet's expanded accuracy.
"$capsnet" "${af[@]}" --baseline-max-epochs 3 >"$work/af3.out" 2>&1
check "a larger --baseline-max-epochs goes on" test $? -eq 0 || tail -3 "$work/af3.out" >&2
below=$(python3 -c "
import json
caps = [json.loads(l) for l in open('$work/af/capsnet-affine.jsonl')]
base = [json.loads(l) for l in open('$work/af/baseline-affine.jsonl')][:2]
print(int(base[-1]['expanded_accuracy'] < caps[-1]['expanded_accuracy']))")
check "the baseline trains on only while below CapsNet (below: $below)" test "$(wc -l <"$work/af/baseline-affine.jsonl")" -eq $((2 + below))

echo "experiments cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
