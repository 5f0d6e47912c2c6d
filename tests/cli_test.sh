#!/usr/bin/env bash
# End-to-end runs of the capsnet binary: help, bad arguments, bad files,
# train on a subset of MNIST, eval, resume, Ctrl-C.
# Usage: cli_test.sh CAPSNET MNIST_DIR
set -uo pipefail

capsnet=$1
mnist=$2
source "$(dirname "$0")/test_lib.sh"

small=(--data "$mnist" --limit 256 --test-limit 200 --threads 2)

# Help documents every option.
"$capsnet" --help >"$work/help"
check "help lists subcommands" grep -q "train" "$work/help"
"$capsnet" train --help >"$work/train-help"
for option in --data --dataset --epochs --batch-size --lr --lr-decay --routing-iters \
  --routing-softmax --shift --recon-weight --recon-loss --mask --normalize --margin-squared \
  --w-init-std --digit-bias --routing --precision --device --preset --seed --threads --limit \
  --test-limit --out --resume; do
  check "train --help documents $option" grep -q -- "$option " "$work/train-help"
done
"$capsnet" eval --help >"$work/eval-help"
for option in --checkpoint --data --dataset --batch-size --threads --limit --routing --json; do
  check "eval --help documents $option" grep -q -- "$option" "$work/eval-help"
done

check "train --help names every preset" sh -c "grep -q 'efficient-capsnet: Efficient-CapsNet' '$work/train-help' && grep -q 'cifar10: ' '$work/train-help'"
check "train --help names every model" grep -q "'efficient-capsnet': " "$work/train-help"

# --version: the version of CMake's project(), the commit, LibTorch, the CPU, the parts.
"$capsnet" --version >"$work/version"
check "--version exits 0" test $? -eq 0
want_version=$(sed -n 's/^project(capsnet VERSION \([0-9.]*\).*/\1/p' "$(dirname "$0")/../CMakeLists.txt")
check "--version names the project's version and a commit" grep -Eq "^capsnet $want_version \(commit [^)]+\)$" "$work/version"
check "--version names LibTorch, the CPU, the BLAS and the parts" sh -c "grep -q '^LibTorch [0-9]' '$work/version' && grep -q '^CPU: ' '$work/version' && grep -q '^BLAS: ' '$work/version' && grep -q '^parts: figures yes, serve yes' '$work/version'"

# Bad arguments.
expect_fail "no subcommand" "subcommand" 
expect_fail "zero epochs" "epochs" train --epochs 0
expect_fail "unknown preset" "preset" train --preset fast
expect_fail "unknown dataset" "dataset" train --dataset cifar10
expect_fail "unknown option" "--bogus" train --bogus 3
expect_fail "negative shift" "shift" train --shift -1
expect_fail "lr decay above one" "lr-decay" train --lr-decay 1.5
# One bound, the library's (0, 1]: the command line once refused (0, 1e-6) on its own.
expect_fail "lr decay of zero" "--lr-decay must be in (0, 1" train --lr-decay 0 --out "$work/d0"
expect_fail "lr decay not a number" "--lr-decay must be in (0, 1" train --lr-decay nan --out "$work/dnan"
expect_fail "eval needs a checkpoint" "checkpoint" eval
expect_fail "unknown routing names the choices" "expected fused or reference" train --routing bogus
expect_fail "unknown decoder mask names the choices" "expected label or prediction" train --mask labels
expect_fail "unknown convolution names the choices" "expected auto, im2col, onednn, mixed or winograd" bench --conv fast

# Bad files.
expect_fail "missing data says how to fetch" "scripts/fetch-mnist.sh" train --data "$work/nowhere" --out "$work/r0"
mkdir -p "$work/badmnist"
cp "$mnist"/t10k-* "$work/badmnist/"
# MNIST_DIR holds raw IDX files, or gzip-compressed ones (make test-minimal's).
raw() { if [ -f "$mnist/$1" ]; then cat "$mnist/$1"; else gzip -dc "$mnist/$1.gz"; fi; }
raw train-images-idx3-ubyte | head -c 1000 >"$work/badmnist/train-images-idx3-ubyte"
raw train-labels-idx1-ubyte >"$work/badmnist/train-labels-idx1-ubyte"
expect_fail "truncated images named" "train-images-idx3-ubyte: truncated" train --data "$work/badmnist" --out "$work/r1"

# Train on a subset, then evaluate the checkpoint.
run="$work/run"
"$capsnet" train "${small[@]}" --epochs 1 --out "$run" >"$work/train.log" 2>&1
check "train exits 0" test $? -eq 0
check "train prints the epoch summary" grep -q "epoch 1/1: train loss" "$work/train.log"
for f in config.json metrics.jsonl last.pt best.pt; do check "run has $f" test -s "$run/$f"; done
check "one metrics row" test "$(wc -l <"$run/metrics.jsonl")" -eq 1
head -1 "$run/metrics.jsonl" >"$work/row.json"
check "metrics row has test accuracy and errors" \
  test "$(json_get "$work/row.json" "j['test_errors'] == round(j['test_size']*(1-j['test_accuracy'])) and j['test_size'] == 200")" = True
check "config records options, libtorch and threads" \
  test "$(json_get "$run/config.json" "j['batch_size'] == 64 and j['threads_used'] == 2 and 'libtorch_version' in j and j['model']['routing_iterations'] == 3")" = True

"$capsnet" eval --checkpoint "$run/best.pt" --data "$mnist" --limit 200 --json >"$work/eval.json"
check "eval --json exits 0" test $? -eq 0
check "eval totals agree" test "$(json_get "$work/eval.json" \
  "j['total'] == 200 and sum(c['total'] for c in j['per_class']) == 200 and j['errors'] == 200 - sum(c['correct'] for c in j['per_class'])")" = True
check "eval matches the epoch's test accuracy" test "$(python3 -c "import json; a=json.load(open('$work/eval.json')); b=json.load(open('$work/row.json')); print(a['accuracy'] == b['test_accuracy'])")" = True
"$capsnet" eval --checkpoint "$run/best.pt" --data "$mnist" --limit 200 --routing reference --json >"$work/eval-ref.json"
check "reference routing gives the fused routing's accuracy" test "$(python3 -c "import json; a=json.load(open('$work/eval.json')); b=json.load(open('$work/eval-ref.json')); print(a['errors'] == b['errors'] and abs(a['loss'] - b['loss']) < 1e-4)")" = True
"$capsnet" eval --checkpoint "$run/best.pt" --data "$mnist" --limit 200 >"$work/eval.txt"
check "eval text has per-class accuracy" grep -q "per-class accuracy" "$work/eval.txt"

# Bad checkpoints.
head -c 5000 "$run/last.pt" >"$work/cut.pt"
expect_fail "truncated checkpoint" "checkpoint error" eval --checkpoint "$work/cut.pt" --data "$mnist"
echo "hello" >"$work/text.pt"
expect_fail "not a checkpoint" "not a readable checkpoint" eval --checkpoint "$work/text.pt" --data "$mnist"
expect_fail "missing checkpoint" "not found" eval --checkpoint "$work/none.pt" --data "$mnist"

# Runs are not overwritten; resume continues with the run's own options.
expect_fail "existing run dir" "already holds" train "${small[@]}" --out "$run"
expect_fail "resume cannot change the model" "cannot change" train --resume "$run" --routing-iters 2
"$capsnet" train --resume "$run" --epochs 2 --data "$mnist" >"$work/resume.log" 2>&1
check "resume exits 0" test $? -eq 0
check "resume adds epoch 2" test "$(wc -l <"$run/metrics.jsonl")" -eq 2

# Ctrl-C: finish the step, checkpoint, say how to resume, exit non-zero.
"$capsnet" train --data "$mnist" --limit 4096 --test-limit 200 --batch-size 64 --threads 2 \
  --out "$work/int" >"$work/int.log" 2>"$work/int.err" &
pid=$!
for _ in $(seq 1 600); do grep -q "step" "$work/int.log" 2>/dev/null && break; sleep 0.2; done
kill -INT "$pid"
wait "$pid"
status=$?
check "SIGINT exits 130" test "$status" -eq 130
check "SIGINT says how to resume" grep -q "capsnet train --resume $work/int" "$work/int.err"
check "SIGINT leaves a checkpoint" test -s "$work/int/last.pt"
"$capsnet" train --resume "$work/int" --epochs 1 >"$work/int2.log" 2>&1
check "interrupted run resumes to the end" test $? -eq 0
check "resumed run reports its epoch" grep -q "epoch 1/1: train loss" "$work/int2.log"

# The seed preset, and a non-finite loss.
"$capsnet" train "${small[@]}" --preset seed --epochs 1 --out "$work/seed" >/dev/null 2>&1
check "seed preset trains" test $? -eq 0
check "seed preset records its departures" test "$(json_get "$work/seed/config.json" \
  "j['batch_size'] == 64 and j['normalize'] and not j['margin']['squared'] and j['mask'] == 'prediction' and j['recon_loss'] == 'mse' and j['model']['routing_softmax'] == 'children'")" = True
expect_fail "non-finite loss" "non-finite loss" train "${small[@]}" --lr 1e30 --out "$work/nan"

# A generic OpenBLAS kernel is replaced by Haswell's on AVX2 CPUs, unless the user chose one.
if grep -q avx2 /proc/cpuinfo && grep -q fma /proc/cpuinfo; then
  env -u OPENBLAS_CORETYPE "$capsnet" bench --batch-size 4 --steps 1 --warmup 0 --json >"$work/bench.json" 2>"$work/bench.err"
  check "bench runs without OPENBLAS_CORETYPE" test $? -eq 0
  check "no generic BLAS kernel on an AVX2 CPU" test "$(json_get "$work/bench.json" \
    "j['blas_core'].lower() not in ('prescott', 'core2', 'nehalem', 'unknown')")" = True
fi
OPENBLAS_CORETYPE=Nehalem "$capsnet" bench --batch-size 4 --steps 1 --warmup 0 --json >"$work/bench2.json" 2>/dev/null
check "a user's OPENBLAS_CORETYPE is kept" test "$(json_get "$work/bench2.json" "j['openblas_coretype_env'] == 'Nehalem' and j['blas_core'] == 'Nehalem'")" = True

# bf16 where the CPU lacks it: a message, then fp32. CUDA where there is none: an error.
CAPSNET_NO_BF16=1 "$capsnet" bench --precision bf16 --batch-size 4 --steps 1 --warmup 0 --json \
  >"$work/bench-nobf16.json" 2>"$work/bench-nobf16.err"
check "bf16 without hardware falls back to fp32" test "$(json_get "$work/bench-nobf16.json" "j['precision']")" = fp32
check "bf16 fallback says why" grep -q "running in fp32 instead" "$work/bench-nobf16.err"
if ! grep -q -i nvidia /proc/driver/nvidia/version 2>/dev/null; then
  expect_fail "--device cuda without a GPU" "use --device cpu" train "${small[@]}" --device cuda --out "$work/gpu"
fi
expect_fail "unknown device" "device" eval --checkpoint "$run/best.pt" --data "$mnist" --device tpu
# --format's storage once outlived its runner: CLI11 wrote into freed memory.
"$capsnet" export --format pytorch --checkpoint "$run/best.pt" --out "$work/fmt.pth" >"$work/fmt.out" 2>&1
check "export --format pytorch exits 0" test $? -eq 0
check "and writes the weights" test -s "$work/fmt.pth"

echo "cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
