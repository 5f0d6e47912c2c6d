#!/usr/bin/env bash
# One call on a bare CUDA machine (PyTorch with a CUDA LibTorch, nvcc, CMake,
# ninja; no network): builds capsnet with its CUDA kernels, runs the CUDA
# tests, benchmarks capsnet against the seed's PyTorch model on the same GPU,
# trains the paper's network on MNIST for what is left of the budget and
# evaluates it. Needs the folder of scripts/pack-device-deps.sh (made on a
# Debian machine and carried along).
#
#   bash scripts/gpu-run.sh            # all within GPU_RUN_BUDGET seconds (540)
#
# Every stage writes WORK/NAME.json (status, seconds, results) and WORK/NAME.log;
# OUT gets summary.json (every stage's JSON) and stages.tar.gz (the stage
# files, the training run's metrics and config), rewritten after each stage so
# that a call cut short still returns what it did. A stage that fails does not
# stop the later ones; a stage that needs the build is skipped without it.
# Nothing is read from an earlier call.
#
# Variables: OUT (default gpu-run-out), GPU_RUN_WORK (default OUT/stages),
# GPU_RUN_BUDGET (seconds, default 540), DEPS (default .device-deps),
# BUILD (default build-gpu), JOBS (default nproc), TORCH_PYTHON (default
# python3), TORCH_PREFIX (default that Python's torch.utils.cmake_prefix_path).
# A rehearsal on a machine without a GPU: GPU_RUN_DEVICE=cpu GPU_RUN_CUDA=OFF
# (the same stages on the CPU, without the CUDA kernels); on Debian also
# TORCH_PREFIX=/usr TORCH_PYTHON=/usr/bin/python3, and GPU_RUN_BUILD_LIMIT
# (seconds, default 330) long enough for a 2-core build, or GPU_RUN_PREBUILT=1
# to take BUILD as it is. GPU_RUN_SKIP="PREFIX ...": skip the stages whose
# names start so (a second call that only continues training: "bench unit").
# Exits 1 if a stage failed.
#
# Training (stage 5): GPU_RUN_MODEL capsnet (default: the paper's recipe,
# batch 128) or efficient-capsnet (the authors' recipe, batch 16, 150
# epochs), with --validation-split 5000, steps as a CUDA graph where the build
# has them. Its last.pt goes to OUT/resume/ in pieces of 15 MiB when it fits
# in 5 of them (Efficient-CapsNet's 19 MB does; CapsNet's 99 MB with Adam's
# moments does not); GPU_RUN_RESUME=FOLDER (such an OUT/resume/, carried)
# continues that run where the call before it stopped.
set -uo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
out="${OUT:-$root/gpu-run-out}"
work="${GPU_RUN_WORK:-$out/stages}"
budget="${GPU_RUN_BUDGET:-540}"
deps="${DEPS:-$root/.device-deps}"
build="${BUILD:-$root/build-gpu}"
jobs="${JOBS:-$(nproc)}"
py="${TORCH_PYTHON:-python3}"
device="${GPU_RUN_DEVICE:-cuda}"
cuda_build="${GPU_RUN_CUDA:-ON}"
mkdir -p "$out" "$work"
SECONDS=0
capsnet="$build/capsnet"
run_dir="$work/train-run"
export root out work budget deps build jobs py capsnet run_dir device cuda_build

left() { echo $((budget - SECONDS)); }

# stage NAME LIMIT COMMAND...: runs COMMAND with its output in WORK/NAME.log,
# for at most LIMIT seconds (less if the budget has less), and writes
# WORK/NAME.json from the status and, if the command wrote it, WORK/NAME.result.json.
stage() {
  local name=$1 limit=$2
  shift 2
  local prefix
  for prefix in ${GPU_RUN_SKIP:-}; do
    case "$name" in "$prefix"*) skip "$name" "GPU_RUN_SKIP"; return 0 ;; esac
  done
  local log="$work/$name.log" start=$SECONDS status
  local room=$(( $(left) - 5 ))
  [ "$limit" -gt "$room" ] && limit=$room
  if [ "$limit" -lt 5 ]; then
    echo "skipped: the budget of $budget s is spent" >"$log"
    write_json "$name" skipped 0 "budget spent"
    return 1
  fi
  echo "== $name (at most $limit s, $(left) s of the budget left)"
  # A shell function runs in a child bash (timeout runs programs): functions
  # and variables are exported for it.
  if [ "$(type -t "$1")" = function ]; then
    export -f "$1"
    timeout --kill-after=5 "$limit" bash -c '"$@"' _ "$@" >"$log" 2>&1
  else
    timeout --kill-after=5 "$limit" "$@" >"$log" 2>&1
  fi
  status=$?
  local note=""
  [ "$status" -eq 124 ] && note="timed out after $limit s"
  write_json "$name" "$([ "$status" -eq 0 ] && echo ok || echo failed)" $((SECONDS - start)) \
    "${note:-exit $status}"
  echo "   $name: $([ "$status" -eq 0 ] && echo ok || echo "FAILED (${note:-exit $status})") in $((SECONDS - start)) s"
  tail -n 5 "$log" | sed 's/^/   | /'
  pack
  return "$status"
}

skip() { # skip NAME REASON
  echo "skipped: $2" >"$work/$1.log"
  write_json "$1" skipped 0 "$2"
  echo "== $1: skipped ($2)"
  pack
}

write_json() { # write_json NAME STATUS SECONDS NOTE
  "$py" - "$work" "$1" "$2" "$3" "$4" <<'PY' || echo "{\"stage\": \"$2\", \"status\": \"$3\"}" >"$1/$2.json"
import json, os, sys
work, name, status, seconds, note = sys.argv[1:]
result = {"stage": name, "status": status, "seconds": int(seconds), "note": note}
extra = os.path.join(work, name + ".result.json")
if os.path.exists(extra):
    try:
        result["result"] = json.load(open(extra))
    except ValueError as e:
        result["result_error"] = str(e)
json.dump(result, open(os.path.join(work, name + ".json"), "w"), indent=1)
PY
}

pack() { # OUT/summary.json and OUT/stages.tar.gz from what the stages wrote so far
  "$py" - "$work" "$out/summary.json" "$SECONDS" "$budget" <<'PY'
import glob, json, os, sys
work, path, seconds, budget = sys.argv[1:]
stages = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(work, "*.json")),
                                              key=os.path.getmtime)
          if not f.endswith(".result.json")]
json.dump({"seconds": int(seconds), "budget": int(budget), "stages": stages},
          open(path + ".tmp", "w"), indent=1)
os.replace(path + ".tmp", path)
PY
  tar -czf "$out/stages.tar.gz.tmp" -C "$work" --exclude='*.pt' . 2>/dev/null &&
    mv "$out/stages.tar.gz.tmp" "$out/stages.tar.gz"
}

nccl_include() { # the folder of nccl.h in the Python's nvidia-* packages, if any
  "$py" - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
found = [p for r in roots for p in glob.glob(os.path.join(r, "**", "nccl.h"), recursive=True)]
print(os.path.dirname(sorted(found)[0]) if found else "")
PY
}

# --- 1. the machine -------------------------------------------------------
machine() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
  nvcc --version | tail -n 2 || true
  cmake --version | head -n 1
  ninja --version
  echo "cpus: $(nproc)"
  echo "nccl.h: $(nccl_include)"
  command -v ninja nvcc g++ c++ || true
  g++ --version | head -n 1
  "$py" - "$work/machine.result.json" <<'PY'
import json, os, subprocess, sys, torch
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                          "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    gpu = "none (no nvidia-smi)"
info = {"gpu": gpu, "gpus": torch.cuda.device_count(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda, "cmake_prefix_path": torch.utils.cmake_prefix_path,
        "cpus": os.cpu_count()}
print(json.dumps(info, indent=1))
json.dump(info, open(sys.argv[1], "w"))
PY
}
export -f nccl_include
stage machine 60 machine

# --- 2. configure and build -----------------------------------------------
build_it() { # [C++ standard]
  local standard=${1:-17}
  [ -f "$deps/MANIFEST" ] || { echo "no $deps/MANIFEST: run scripts/pack-device-deps.sh and carry the folder"; return 1; }
  local prefix nccl cuda_compiler
  prefix="${TORCH_PREFIX:-$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')}" || return 1
  local cuda_flags=(-DCAPSNET_USE_CUDA="$cuda_build")
  if [ "$cuda_build" = ON ]; then
    nccl=$(nccl_include)
    cuda_compiler=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    cuda_flags+=(-DCMAKE_CUDA_COMPILER="$cuda_compiler" -DCMAKE_CUDA_ARCHITECTURES=90
                 ${nccl:+-DCAPSNET_NCCL_INCLUDE_DIR="$nccl"})
  fi
  local generator=()
  # Ninja where there is one, unless the build folder was made with another.
  command -v ninja >/dev/null && [ ! -f "$build/CMakeCache.txt" ] && generator=(-G Ninja)
  grep -q "CMAKE_GENERATOR:INTERNAL=Ninja" "$build/CMakeCache.txt" 2>/dev/null && generator=(-G Ninja)
  cmake "${generator[@]}" -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_PREFIX_PATH="$prefix" "${cuda_flags[@]}" -DCAPSNET_DEPS_DIR="$deps" \
    -DCMAKE_CXX_STANDARD="$standard" \
    -DCAPSNET_WITH_FIGURES=OFF -DCAPSNET_WITH_SERVE=OFF -DCAPSNET_WITH_GLOO=AUTO \
    ${CAPSNET_EXTRA_CMAKE:-} || return 1
  # -k 0: every error of this compiler and LibTorch in one call, not the first.
  if [ ${#generator[@]} -gt 0 ]; then
    cmake --build "$build" -j "$jobs" -- -k 0
  else
    cmake --build "$build" -j "$jobs" -- -k
  fi
}
if [ "${GPU_RUN_PREBUILT:-0}" = 1 ]; then
  skip build "GPU_RUN_PREBUILT=1: $build as it is"
else
  stage build "${GPU_RUN_BUILD_LIMIT:-330}" build_it
fi
built=0
[ -x "$capsnet" ] && [ -x "$build/tests/capsnet_tests" ] && built=1
# The CUDA graph step (src/engine/cuda_graph.cpp) was first compiled on a GPU
# machine: if it is what failed, the same build without it.
if [ "$built" -eq 0 ] && grep -q "cuda_graph.cpp" "$work/build.log" && [ "$(left)" -gt 240 ]; then
  grep -m 60 -E "error|Error" "$work/build.log" >"$work/build-graph-errors.log" || true
  export CAPSNET_EXTRA_CMAKE="-DCAPSNET_CUDA_GRAPHS=OFF"
  stage build_without_graphs 200 build_it
  [ -x "$capsnet" ] && [ -x "$build/tests/capsnet_tests" ] && built=1
fi
if [ "$built" -eq 0 ]; then
  # The errors, for the summary: the first lines that say error.
  grep -m 60 -E "error|Error" "$work/build.log" >"$work/build-errors.log" || true
  # Headers of a newer LibTorch may need C++20: the same build in C++20, if
  # the configuration went through and time is left.
  if grep -q "Build files have been written" "$work/build.log" && [ "$(left)" -gt 300 ]; then
    build="$build-cxx20"
    capsnet="$build/capsnet"
    export build capsnet
    stage build_cxx20 240 build_it 20
    [ -x "$capsnet" ] && [ -x "$build/tests/capsnet_tests" ] && built=1
  fi
fi

# --- 3. the CUDA tests ----------------------------------------------------
if [ "$built" -eq 1 ]; then
  stage cuda_tests 120 "$build/tests/capsnet_tests" --gtest_filter='*_CUDA*:Device.*' \
    --gtest_output="json:$work/cuda_tests.result.json"
else
  skip cuda_tests "the build failed"
fi

# torch.ops.capsnet from this machine's Python (its torch is the LibTorch
# built against): tests/python/test_ops.py, whose CUDA test compares the
# GPU kernels with the CPU's, and test_ops_pt2.py: torch.library.opcheck of
# every operator and torch.compile of a module calling them (PyTorch 2).
# Needs pytest in that Python.
if [ "$built" -eq 1 ] && "$py" -c "import pytest" 2>/dev/null; then
  stage python_ops 90 env CAPSNET_OPS_LIBRARY="$build/libcapsnet_ops.so" \
    "$py" -m pytest -q -p no:cacheprovider "$root/tests/python/test_ops.py" \
    "$root/tests/python/test_ops_pt2.py"
elif [ "$built" -eq 1 ]; then
  skip python_ops "$py has no pytest"
else
  skip python_ops "the build failed"
fi

# --- 4. capsnet bench against the same models in PyTorch on the same GPU ---
# Each model at its published batch (CapsNet 128, Efficient-CapsNet 16):
# capsnet eager, capsnet replaying a CUDA graph, PyTorch eager, and PyTorch
# with torch.compile(mode="reduce-overhead"); CapsNet in bf16 as well.
graphs=0
[ "$built" -eq 1 ] && "$capsnet" --version 2>/dev/null | grep -q "CUDA graphs yes" && graphs=1
for spec in capsnet:128 efficient-capsnet:16; do
  model=${spec%%:*} batch=${spec##*:}
  tag=$([ "$model" = capsnet ] && echo capsnet || echo effnet)
  args="--model $model --batch-size $batch --steps ${GPU_RUN_BENCH_STEPS:-30} --warmup 5"
  if [ "$built" -eq 1 ]; then
    stage "bench_${tag}_eager" 90 sh -c "'$capsnet' bench --device $device $args --json > '$work/bench_${tag}_eager.result.json'"
    if [ "$graphs" -eq 1 ]; then
      stage "bench_${tag}_graph" 90 sh -c "'$capsnet' bench --device $device $args --cuda-graph on --json > '$work/bench_${tag}_graph.result.json'"
    else
      skip "bench_${tag}_graph" "this build has no CUDA graphs"
    fi
    [ "$model" = capsnet ] &&
      stage bench_capsnet_bf16 90 sh -c "'$capsnet' bench --device $device --precision bf16 $args --json > '$work/bench_capsnet_bf16.result.json'"
  else
    skip "bench_${tag}_eager" "the build failed"
  fi
  stage "bench_${tag}_pytorch" 90 sh -c "'$py' '$root/bench/pytorch_reference.py' --device $device $args --json > '$work/bench_${tag}_pytorch.result.json'"
  stage "bench_${tag}_compile" 150 sh -c "'$py' '$root/bench/pytorch_reference.py' --device $device $args --compile --json > '$work/bench_${tag}_compile.result.json'"
done
ratios() {
  "$py" - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
def load(name):
    try:
        return json.load(open(os.path.join(work, name + ".result.json")))
    except (OSError, ValueError):
        return None
result = {}
for tag in ("capsnet", "effnet"):
    runs = {kind: load(f"bench_{tag}_{kind}") for kind in ("eager", "graph", "bf16", "pytorch", "compile")}
    for kind, run in runs.items():
        if not run: continue
        for key in ("train_images_per_second", "inference_images_per_second"):
            result[f"{tag}_{kind}_{key}"] = run.get(key)
        if "train_ms_per_step" in run: result[f"{tag}_{kind}_train_ms_per_step"] = run["train_ms_per_step"]
    torch_ = runs["pytorch"]
    for kind in ("eager", "graph", "bf16", "compile"):
        if runs[kind] and torch_:
            for key in ("train_images_per_second", "inference_images_per_second"):
                if runs[kind].get(key) and torch_.get(key):
                    result[f"{tag}_{kind}_vs_pytorch_{key}"] = runs[kind][key] / torch_[key]
print(json.dumps(result, indent=1))
json.dump(result, open(os.path.join(work, "bench_ratios.result.json"), "w"))
if not (load("bench_capsnet_eager") and load("bench_capsnet_pytorch")): sys.exit(1)
PY
}
stage bench_ratios 20 ratios

# --- 5. train the paper's network on MNIST for the time left, then evaluate
# Reserved after training: evaluation (~20 s), the 2-GPU stage and packing.
gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
reserve=45
[ "$gpus" -ge 2 ] && reserve=$((reserve + 60))
if [ "$built" -eq 1 ]; then
  # 30: start-up, data loading, the last checkpoint
  train_budget=$(( $(left) - reserve - 30 ))
  export train_budget
  if [ "$train_budget" -ge 30 ]; then
    train_it() {
      local model=${GPU_RUN_MODEL:-capsnet} resume=()
      local recipe=(--epochs 1000)
      [ "$model" = efficient-capsnet ] && recipe=(--preset efficient-capsnet)
      if [ -n "${GPU_RUN_RESUME:-}" ] && ls "$GPU_RUN_RESUME"/last.pt.part-* >/dev/null 2>&1; then
        mkdir -p "$run_dir"
        cat "$GPU_RUN_RESUME"/last.pt.part-* >"$run_dir/last.pt" &&
          (cd "$run_dir" && sha256sum -c "$GPU_RUN_RESUME/last.pt.sha256") &&
          cp "$GPU_RUN_RESUME"/config.json "$run_dir"/ || return 1
        [ -f "$GPU_RUN_RESUME/metrics.jsonl" ] && cp "$GPU_RUN_RESUME/metrics.jsonl" "$run_dir"/
        "$capsnet" train --resume "$run_dir" --data "$deps/mnist" --device $device \
          --time-limit "$train_budget"
      else
        "$capsnet" train --model "$model" "${recipe[@]}" --data "$deps/mnist" --device $device \
          --validation-split 5000 --time-limit "$train_budget" --out "$run_dir"
      fi
      local status=$?
      # The run's state for the next call, in pieces the device tool brings back.
      if [ -f "$run_dir/last.pt" ] && [ "$(stat -c %s "$run_dir/last.pt")" -le $((5 * 15 * 1048576)) ]; then
        mkdir -p "$out/resume"
        rm -f "$out/resume"/last.pt.part-*
        split -b 15M -d "$run_dir/last.pt" "$out/resume/last.pt.part-"
        (cd "$run_dir" && sha256sum last.pt) >"$out/resume/last.pt.sha256"
        cp "$run_dir/config.json" "$out/resume/"
        [ -f "$run_dir/metrics.jsonl" ] && cp "$run_dir/metrics.jsonl" "$out/resume/"
      fi
      "$py" - "$run_dir" "$work/train.result.json" "$train_budget" <<'PY'
import json, sys
run, path, budget = sys.argv[1:]
try:
    rows = [json.loads(l) for l in open(run + "/metrics.jsonl")]
except FileNotFoundError:  # no epoch ended
    rows = []
# The last epoch's test error, and that of the epoch chosen on the validation
# split; the best test error only labelled as chosen on the test set.
def error(row):
    return None if row.get("test_accuracy") is None else 1 - row["test_accuracy"]
chosen = max(rows, key=lambda r: r.get("val_accuracy", -1)) if rows else None
summary = {"time_limit_seconds": int(budget), "epochs": len(rows),
           "final_epoch_test_error": error(rows[-1]) if rows else None,
           "validation_chosen_epoch": chosen and chosen.get("epoch"),
           "validation_chosen_test_error": error(chosen) if chosen else None,
           "best_test_error_chosen_on_test": min((error(r) for r in rows if error(r) is not None), default=None),
           "per_epoch": rows}
print(json.dumps({k: v for k, v in summary.items() if k != "per_epoch"}, indent=1))
json.dump(summary, open(path, "w"))
PY
      return $status
    }
    stage train $((train_budget + 40)) train_it
    [ -f "$run_dir/best.pt" ] || skip eval "no epoch ended: no best.pt"
    [ -f "$run_dir/best.pt" ] && stage eval 60 sh -c "'$capsnet' eval --checkpoint '$run_dir/best.pt' --data '$deps/mnist' --device $device --json > '$work/eval.result.json'"
  else
    skip train "only $train_budget s left for training"
    skip eval "no training"
  fi
else
  skip train "the build failed"
  skip eval "the build failed"
fi

# --- 6. two ranks through NCCL: needs two GPUs (NCCL refuses two ranks on one)
if [ "$built" -eq 1 ] && [ "$gpus" -ge 2 ]; then
  nccl_check() {
    "$capsnet" launch --nproc 2 -- train --data "$deps/mnist" --device $device --backend nccl \
      --limit 2048 --test-limit 500 --epochs 1 --batch-size 32 --seed 3 --out "$work/nccl-2" &&
    "$capsnet" train --data "$deps/mnist" --device $device --limit 2048 --test-limit 500 --epochs 1 \
      --batch-size 64 --seed 3 --out "$work/nccl-1" &&
    "$py" - "$work" <<'PY'
import json, sys
work = sys.argv[1]
two = json.loads(open(work + "/nccl-2/metrics.jsonl").readline())
one = json.loads(open(work + "/nccl-1/metrics.jsonl").readline())
result = {"two_ranks": two, "one_rank": one,
          "train_loss_difference": abs(two["train_loss"] - one["train_loss"])}
print(json.dumps(result, indent=1))
json.dump(result, open(work + "/nccl.result.json", "w"))
sys.exit(0 if result["train_loss_difference"] < 1e-3 * abs(one["train_loss"]) else 1)
PY
  }
  stage nccl 60 nccl_check
else
  skip nccl "$([ "$built" -eq 1 ] && echo "one GPU: NCCL refuses two ranks on the same GPU" || echo "the build failed")"
fi

# --- 7. the rest of the unit tests on LibTorch 2.x, if time is left ----------
if [ "$built" -eq 1 ] && [ "$(left)" -gt 40 ]; then
  stage unit_tests $(( $(left) - 15 )) "$build/tests/capsnet_tests" --gtest_filter='-*_CUDA*:Device.*' \
    --gtest_output="json:$work/unit_tests.result.json"
else
  skip unit_tests "no time left or no build"
fi

pack
failed=$(grep -l '"status": "failed"' "$work"/*.json 2>/dev/null | grep -v result.json | xargs -r -n1 basename | sed 's/\.json$//' | tr '\n' ' ')
echo "gpu-run: done in $SECONDS s of $budget; $out/summary.json${failed:+; failed: $failed}"
[ -z "$failed" ]
