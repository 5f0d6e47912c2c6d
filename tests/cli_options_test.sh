#!/usr/bin/env bash
# Every option of every subcommand, given. A table of capsnet runs (one row
# per run: the arguments, the exit status wanted, and a check of the output or
# of a file written) gives each option at least once with a value other than
# its default, and checks what depends on it where that is cheap. The options
# come from the binary itself (capsnet --list-options, read from CLI11's own
# Apps): an option that no row gives, or gives only at its default, fails the
# test. Subcommands this build left out are skipped; without Gloo, the
# data-parallel rows must fail saying so.
# Usage: cli_options_test.sh CAPSNET MNIST_DIR GLOO(ON|OFF)
set -uo pipefail
capsnet=$1
mnist=$2
gloo=$3
here=$(dirname "$0")
source "$here/test_lib.sh"
background=()
trap 'for p in ${background[@]+"${background[@]}"}; do kill "$p" 2>/dev/null; done; rm -rf "$work"' EXIT

"$capsnet" --list-options >"$work/options.jsonl"
check "--list-options exits 0" test $? -eq 0
check "--list-options lists train's options" grep -q '"command":"train","in_build":true,"options":\[{' "$work/options.jsonl"
in_build() { grep -q "\"command\":\"$1\",\"in_build\":true" "$work/options.jsonl"; }

# The table's helpers. Each run's arguments go to $work/rows.jsonl for the
# coverage check at the end; its stdout and stderr to $out.
runs=0
record() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >>"$work/rows.jsonl"; }

judge() { # judge NAME WANTED_STATUS STATUS CHECK (WANTED_STATUS "nonzero": any failure)
  if { [ "$3" = "$2" ] || { [ "$2" = nonzero ] && [ "$3" -ne 0 ]; }; } && eval "$4"; then
    passed=$((passed + 1))
    echo "ok: $1 ($((SECONDS - started)) s)"
  else
    failed=$((failed + 1))
    echo "FAILED: $1 (exit $3, wanted $2; check: $4)" >&2
    tail -5 "$out" >&2
  fi
}

# row NAME STATUS CHECK ARGS...: capsnet ARGS exits with STATUS, then the
# shell command CHECK succeeds. Rows of a subcommand this build left out are skipped.
row() {
  local name=$1 want=$2 test=$3
  shift 3
  in_build "$1" || { echo "SKIPPED: $name ($1 is not in this build)"; return 0; }
  record "$@"
  runs=$((runs + 1))
  out=$work/run-$runs.out
  started=$SECONDS
  timeout 600 "$capsnet" "$@" >"$out" 2>&1
  judge "$name" "$want" $? "$test"
}

# bg_row ARGS...: starts capsnet ARGS in the background; bg_done judges it.
bg_row() {
  record "$@"
  runs=$((runs + 1))
  bg_out=$work/run-$runs.out
  started=$SECONDS
  timeout 600 "$capsnet" "$@" >"$bg_out" 2>&1 &
  bg_pid=$!
  background+=("$bg_pid")
}
bg_done() { # bg_done NAME STATUS CHECK
  wait "$bg_pid"
  local status=$?
  out=$bg_out
  judge "$1" "$2" "$status" "$3"
}

config_is() { # config_is RUN_DIR KEY=VALUE...: RUN_DIR/config.json has these values (KEY a.b: nested)
  python3 - "$@" <<'PY'
import json, sys
config = json.load(open(sys.argv[1] + "/config.json"))
wrong = []
for pair in sys.argv[2:]:
    key, want = pair.split("=", 1)
    value = config
    for part in key.split("."):
        value = value[part]
    got = value if isinstance(value, str) else json.dumps(value)
    same = got == want
    try:
        same = same or float(value) == float(want)
    except (TypeError, ValueError):
        pass
    if not same:
        wrong.append(f"  config.json {key}: {got}, wanted {want}")
if wrong:
    print(*wrong, sep="\n", file=sys.stderr)
sys.exit(1 if wrong else 0)
PY
}
lines() { wc -l <"$1"; }
json_is() { # json_is FILE PYTHON-EXPRESSION-ON-j: true for the first JSON line of FILE
  test "$(grep -m1 '^[[{]' "$1" | json_get /dev/stdin "$2")" = True
}

S=(--data "$mnist" --limit 32 --test-limit 16 --threads 1)
# The baseline CNN (35M parameters) takes ~5 images/s on one thread.
few=(--data "$mnist" --limit 8 --test-limit 8 --threads 1)
# bf16 falls back to fp32 on a CPU without bf16 hardware; either way the run works.
bf16_said='grep -q "bf16" "$out"'

# train: one run per group of options, each value recorded in config.json.
row "train: numbers and choices of the paper's preset" 0 \
  'config_is "$work/base" epochs=1 batch_size=16 eval_batch_size=8 seed=7 lr=0.002 lr_decay=0.5 \
     model.routing_iterations=2 shift=1 recon_weight=0.001 model.w_init_std=0.02 margin.m_plus=0.8 \
     margin.m_minus=0.2 margin.lambda=0.4 device=cpu routing=reference conv=im2col threads=1 \
     train_size=32 test_size=16 data_dir="$mnist"' \
  train "${S[@]}" --epochs 1 --batch-size 16 --eval-batch-size 8 --seed 7 --lr 0.002 --lr-decay 0.5 \
  --routing-iters 2 --shift 1 --recon-weight 0.001 --w-init-std 0.02 --m-plus 0.8 --m-minus 0.2 \
  --margin-lambda 0.4 --device cpu --routing reference --conv im2col --out "$work/base"
ckpt=$work/base/best.pt
row "train: the seed's preset, the baseline CNN" 0 \
  'config_is "$work/cnn" preset=seed model_name=baseline-cnn normalize=true margin.squared=false' \
  train --preset seed --model baseline-cnn "${few[@]}" --epochs 1 --batch-size 16 --out "$work/cnn"
row "train: MultiMNIST, the seed's departures one by one, bf16" 0 \
  'config_is "$work/multi" dataset=multimnist model.image_size=36 model.routing_softmax=children \
     recon_loss=mse mask=prediction normalize=true margin.squared=false model.digit_bias=true \
     precision=bf16 && '"$bf16_said" \
  train --dataset multimnist --routing-softmax children --recon-loss mse --mask prediction \
  --normalize 1 --margin-squared 0 --digit-bias 1 --precision bf16 "${S[@]}" --epochs 1 \
  --batch-size 16 --out "$work/multi"
row "train: Efficient-CapsNet's preset, its augmentation, lr floor and precise batch norm" 0 \
  'config_is "$work/eff" preset=efficient-capsnet model_name=efficient-capsnet digit_augment=true \
     lr_min=0.0002 lr=0.0005 efficient.image_size=28 precise_bn_images=24' \
  train --preset efficient-capsnet --model efficient-capsnet --digit-augment --lr-min 2e-4 \
  --precise-bn-images 24 "${S[@]}" --epochs 1 --out "$work/eff"
row "train: --validation-split holds out 8 and chooses best.pt on them; --calibrate-init false; --model-config" 0 \
  'config_is "$work/val" validation_split=8 calibrate_init=false model.primary_types=8 && \
     grep -q "training on 24 mnist images, choosing best.pt on 8 held out" "$out" && \
     grep -q "chosen on the validation split" "$out" && \
     json_get "$work/val/metrics.jsonl" "j[\"val_size\"] == 8 and j[\"best\"] == 1" | grep -q True' \
  train "${S[@]}" --epochs 1 --batch-size 16 --validation-split 8 --calibrate-init false \
  --model-config '{"primary_types": 8}' --out "$work/val"
row "train: --resume adds an epoch; --conv may change, and the CNN says it ignores it" 0 \
  'test "$(lines "$work/cnn/metrics.jsonl")" -eq 2 && grep -q "ignores --conv onednn" "$out"' \
  train --resume "$work/cnn" --epochs 2 --threads 1 --conv onednn
row "train: --conv winograd trains (the primary capsules by Winograd) and is recorded" 0 \
  'config_is "$work/wino" conv=winograd && test "$(lines "$work/wino/metrics.jsonl")" -eq 1' \
  train "${S[@]}" --epochs 1 --batch-size 16 --conv winograd --out "$work/wino"
row "train: --resume-if-exists, the first run's command again, one epoch more" 0 \
  'grep -q "resuming .* at epoch 2, step 0" "$out" && test "$(lines "$work/eff/metrics.jsonl")" -eq 2' \
  train --preset efficient-capsnet --model efficient-capsnet --digit-augment --lr-min 2e-4 \
  "${S[@]}" --epochs 2 --resume-if-exists --out "$work/eff"
mkdir -p "$work/forced" && echo notes >"$work/forced/notes.txt"
row "train: a directory that is not empty needs --force" 1 'grep -q "is not empty" "$out"' \
  train "${S[@]}" --epochs 2 --batch-size 8 --out "$work/forced"
row "train: --force, and --time-limit stops mid-epoch" 0 \
  'grep -q "time limit of 0.001 s reached: stopped mid-epoch" "$out" && test -s "$work/forced/last.pt"' \
  train "${S[@]}" --epochs 2 --batch-size 8 --out "$work/forced" --force --time-limit 0.001 \
  --cuda-graph off
row "train: --cuda-graph on without a GPU is refused before anything is written" 1 \
  'grep -q "cuda-graph on needs a CUDA device" "$out" && test ! -e "$work/graphed"' \
  train "${S[@]}" --epochs 1 --device cpu --cuda-graph on --out "$work/graphed"

# Folders of pictures: framed digits written as one (JPEG, 40x40), then
# trained on as a flat DIR/CLASS tree with every folder option.
row "data export-folder: expanded MNIST as JPEG, limits, --force" 0 \
  'test "$(ls "$work/digits/train/"*/*.jpg | wc -l)" -eq 60 && test "$(ls "$work/digits/test/"*/*.jpg | wc -l)" -eq 20' \
  data export-folder --dataset expanded-mnist --data "$mnist" --out "$work/digits" --limit 60 \
  --test-limit 20 --format jpeg --force
row "train: a folder of pictures, every folder option" 0 \
  'config_is "$work/fold" dataset=folder folder.test_fraction=0.34 folder.channels=3 folder.image_size=32 \
     folder.crop=28 folder.augment=true folder.cache_mb=1 folder.loader_threads=1 folder.strict=true \
     model.primary_types=4 \
     model.in_channels=3 model.image_size=28 data_shape.resize=32 train_size=39 test_size=21' \
  train --dataset folder --data "$work/digits/train" --test-fraction 0.34 --channels 3 --image-size 32 \
  --crop 28 --augment --cache-mb 1 --loader-threads 1 --strict --primary-types 4 --epochs 1 \
  --batch-size 8 --threads 1 \
  --out "$work/fold"

# Data-parallel training: two ranks by flags, two machines by launch, two
# processes by launch. Without Gloo each must fail, naming it.
if [ "$gloo" = ON ]; then
  dist_status=0 dist_rank1='true' dist_pair='config_is "$work/pair" world_size=2 batch_size=16'
  dist_nodes='config_is "$work/nodes" world_size=2 batch_size=16'
  dist_nproc='config_is "$work/nproc" world_size=2 batch_size=16'
else
  dist_status=nonzero dist_rank1='grep -q "no Gloo" "$out"' dist_pair=$dist_rank1 dist_nodes=$dist_rank1
  dist_nproc=$dist_rank1
fi
port=$(free_port)
pair=("${S[@]}" --epochs 1 --batch-size 8 --world-size 2 --master-addr 127.0.0.1 --master-port "$port"
  --backend gloo --dist-timeout 30 --grad-bucket-mb 0.5 --no-grad-overlap --out "$work/pair")
bg_row train "${pair[@]}" --rank 1 --local-rank 1
row "train: rank 0 of two, by flags" "$dist_status" "$dist_pair" train "${pair[@]}" --rank 0 --local-rank 0
bg_done "train: rank 1 of two, by flags" "$dist_status" "$dist_rank1"
port=$(free_port)
nodes=(--nnodes 2 --master-port "$port" -- train "${S[@]}" --epochs 1 --batch-size 8 --out "$work/nodes")
bg_row launch --node-rank 1 "${nodes[@]}"
row "launch: machine 0 of two" "$dist_status" "$dist_nodes" launch --node-rank 0 "${nodes[@]}"
bg_done "launch: machine 1 of two" "$dist_status" "$dist_rank1"
row "launch: two processes, restarts allowed" "$dist_status" "$dist_nproc" \
  launch --nproc 2 --master-addr localhost --grace 5 --max-restarts 1 -- train "${S[@]}" --epochs 1 \
  --batch-size 8 --resume-if-exists --out "$work/nproc"

# The commands that read a checkpoint: the first run's.
row "eval: JSON, reference routing, bf16, batches of 7" 0 \
  'json_is "$out" "j[\"total\"] == 20 and j[\"dataset\"] == \"mnist\"" && '"$bf16_said" \
  eval --checkpoint "$ckpt" --data "$mnist" --batch-size 7 --limit 20 --routing reference \
  --precision bf16 --device cpu --threads 1 --json
if in_build reconstruct; then
  figures=(0 'test -s "$work/confusion.png" && test -s "$work/worst.png" && grep -q "worst errors drawn to" "$out"')
else
  figures=(1 'grep -q "without figures" "$out"')
fi
row "eval: the confusion matrix and the worst digits" "${figures[@]}" \
  eval --checkpoint "$ckpt" --dataset mnist --data "$mnist" --limit 20 --threads 1 \
  --confusion "$work/confusion.png" --worst 2 "$work/worst.png"
row "bench: im2col, JSON and a trace" 0 \
  'json_is "$out" "j[\"steps\"] == 1 and j[\"batch_size\"] == 4 and (j[\"device\"] != \"cpu\" or \"im2col\" in j[\"conv_path\"])" &&
     test -s "$work/trace.json"' \
  bench --batch-size 4 --steps 1 --warmup 0 --conv im2col --device auto --threads 1 \
  --trace "$work/trace.json" --json
row "bench: --conv winograd names the Winograd path" 0 'grep -q "Winograd F(2x2, 5x5)" "$out"' \
  bench --batch-size 4 --steps 1 --warmup 0 --conv winograd --threads 1
row "bench: reference routing, bf16" 0 'grep -q "reference routing" "$out" && '"$bf16_said" \
  bench --batch-size 4 --steps 1 --warmup 0 --routing reference --precision bf16 --threads 1
row "bench: Efficient-CapsNet" 0 'grep -q "capsnet bench: efficient-capsnet, batch 4" "$out"' \
  bench --model efficient-capsnet --batch-size 4 --steps 1 --warmup 0 --threads 1 --cuda-graph off
row "bench: --cuda-graph on without a GPU is refused" 1 'grep -q "needs a CUDA device" "$out"' \
  bench --cuda-graph on
python3 - "$mnist" "$work/three.idx" <<'PY'
import gzip, os, struct, sys
path = sys.argv[1] + "/t10k-images-idx3-ubyte"
data = open(path, "rb").read() if os.path.exists(path) else gzip.open(path + ".gz").read()
open(sys.argv[2], "wb").write(struct.pack(">IIII", 0x803, 3, 28, 28) + data[16:16 + 3 * 784])
PY
row "predict: JSON and the preprocessed images" 0 \
  'json_is "$out" "len(j) == 3" && test "$(ls "$work/pre" | wc -l)" -eq 3' \
  predict --checkpoint "$ckpt" --save-preprocessed "$work/pre" --precision bf16 --device cpu \
  --threads 1 --json "$work/three.idx"
row "reconstruct: at the default scale" 0 'test -s "$work/recon2.png"' \
  reconstruct --checkpoint "$ckpt" --out "$work/recon2.png" --data "$mnist" --n 4 --errors 2 --search 20
row "reconstruct: 4 digits, 2 errors, scale 1" 0 \
  'grep -q "wrote $work/recon.png: 4 test digits with reconstructions; 2 of" "$out" &&
     test "$(png_size "$work/recon.png" | cut -d" " -f1)" -lt "$(png_size "$work/recon2.png" | cut -d" " -f1)"' \
  reconstruct --checkpoint "$ckpt" --out "$work/recon.png" --data "$mnist" --dataset mnist \
  --scale 1 --threads 1 --n 4 --errors 2 --search 20
row "perturb: capsule 5 of image 3, steps of 0.25" 0 \
  'grep -q "wrote $work/perturb.png: 16 dimensions x 5 steps of 0.25 for capsule 5 of test image 3" "$out"' \
  perturb --checkpoint "$ckpt" --out "$work/perturb.png" --data "$mnist" --dataset mnist --scale 1 \
  --threads 1 --index 3 --class 5 --range 0.5 --step 0.25
row "attention: Efficient-CapsNet's coupling of 3 digits" 0 \
  'grep -q "wrote $work/attention.png: coupling coefficients of 3 test images (16 primary capsules x 10 classes)" "$out"' \
  attention --checkpoint "$work/eff/last.pt" --out "$work/attention.png" --data "$mnist" \
  --dataset mnist --scale 1 --threads 1 --n 3
row "plot: the resumed run's two epochs" 0 'grep -q "wrote $work/curves.png: 2 epochs" "$out"' \
  plot "$work/cnn" --out "$work/curves.png"
row "export: --format and --out" 0 \
  'test -s "$work/model.pth" && test "$(json_get "$work/model.json" "j[\"model\"][\"routing_iterations\"]")" = 2' \
  export --checkpoint "$ckpt" --format pytorch --out "$work/model.pth"
row "export: --format weights, smaller than the checkpoint, and eval reads it" 0 \
  'test "$(stat -c %s "$work/weights.pt")" -lt "$(stat -c %s "$ckpt")" && "$capsnet" eval --checkpoint "$work/weights.pt" --data "$mnist" --limit 8 --threads 1 >/dev/null 2>&1' \
  export --checkpoint "$ckpt" --format weights --out "$work/weights.pt"

if in_build serve; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 \
    -subj /CN=localhost >/dev/null 2>&1
  bg_row serve --checkpoint "$ckpt" --host localhost --port 0 --max-batch 4 --max-queue 8 \
    --max-connections 16 --max-client-connections 8 --timeout 5 --precision bf16 --device cpu --threads 1 \
    --token 0123456789abcdef0123 --insecure-no-token --tls-cert "$work/cert.pem" \
    --tls-key "$work/key.pem" --access-log "$work/serve-access.log" --max-decode-megapixels 2
  url=""
  for _ in $(seq 300); do
    url=$(grep -o 'https://localhost:[0-9]*/' "$bg_out" 2>/dev/null)
    [ -n "$url" ] || ! kill -0 "$bg_pid" 2>/dev/null && break
    sleep 0.2
  done
  check "serve listens on localhost over HTTPS" test -n "$url"
  check "serve answers /metrics with the token" python3 -c "
import ssl, sys, urllib.request
r = urllib.request.Request('${url}metrics', headers={'Authorization': 'Bearer 0123456789abcdef0123'})
sys.exit(urllib.request.urlopen(r, timeout=10, context=ssl._create_unverified_context()).status != 200)"
  kill -TERM "$bg_pid"
  bg_done "serve: stops on SIGTERM; the access log has the /metrics request" 0 \
    'grep -q "stopped after" "$out" && grep -q "GET /metrics 200" "$work/serve-access.log"'
fi

row "experiment table1: one trial of each row, on a folder" 0 \
  'test "$(grep -c "^| .* | 1 | 0\." "$work/t1/table1.md")" -eq 5 && config_is "$work/t1/capsnet-r1-norecon/trial-1" epochs=1 batch_size=8 train_size=16 test_size=8 threads=1 precision=bf16 dataset=folder' \
  experiment table1 --trials 1 --epochs 1 --batch-size 8 --limit 16 --test-limit 8 \
  --dataset folder --data "$work/digits/train" --threads 1 --precision bf16 --out "$work/t1"
row "experiment affine: one epoch each, Efficient-CapsNet too" 0 \
  'test -s "$work/af/affine.md" && test "$(lines "$work/af/baseline-affine.jsonl")" -eq 1 && config_is "$work/af/capsnet" epochs=1 batch_size=8 train_size=16 test_size=8 threads=1 precision=bf16 &&
     test "$(lines "$work/af/efficient-capsnet-affine.jsonl")" -eq 1 && grep -q "| Efficient-CapsNet (" "$work/af/affine.md"' \
  experiment affine --epochs 1 --batch-size 8 --limit 16 --test-limit 8 --data "$mnist" \
  --threads 1 --precision bf16 --out "$work/af" --baseline-max-epochs 1 --efficient-capsnet

# The coverage check: every option the binary lists, in this build's
# subcommands, is given by some row, and with a value other than its default.
# An option whose one possible value is its default is named here, with why.
only_value=() # none now
coverage() { # coverage OPTIONS ROWS: prints the options missed, fails when any is
  python3 - "$1" "$2" "${only_value[@]}" <<'PY'
import json, sys
commands = {c["command"]: c for c in map(json.loads, open(sys.argv[1]))}
rows = [json.loads(line) for line in open(sys.argv[2])]
only_value = set(sys.argv[3:])

def normal(value):
    text = value.strip().lower()
    text = {"true": "1", "on": "1", "yes": "1", "false": "0", "off": "0", "no": "0"}.get(text, text)
    try:
        return float(text)
    except ValueError:
        return text

given = {} # (command, option) -> the values of each time it was given
for args in rows:
    n = next((n for n in range(len(args), 0, -1) if " ".join(args[:n]) in commands), 0)
    if not n:
        continue
    command = " ".join(args[:n])
    options = {o["name"]: o for o in commands[command]["options"]}
    k = n
    while k < len(args) and args[k] != "--": # after --: launch's command
        name, eq, inline = args[k].partition("=")
        k += 1
        if name not in options:
            continue
        count = options[name]["values"]
        values = [inline] if eq else args[k:k + count]
        k += 0 if eq else count
        given.setdefault((command, name), []).append(values)

missed, total = [], 0
for command, entry in commands.items():
    if not entry["in_build"]:
        continue
    for option in entry["options"]:
        total += 1
        name, default = option["name"], option["default"]
        times = given.get((command, name))
        where = f"{command} {name}"
        if not times:
            missed.append(f"{where}: in no row of the table")
        elif (option["values"] > 0 and default != "" and where not in only_value and
              all(len(v) == 1 and normal(v[0]) == normal(default) for v in times)):
            missed.append(f"{where}: given only at its default, {default}")
print(f"{total - len(missed)} of {total} options given")
for line in missed:
    print("  MISSED:", line)
sys.exit(1 if missed else 0)
PY
}
coverage "$work/options.jsonl" "$work/rows.jsonl" >"$work/coverage.out"
check "every option of every subcommand is in the table" test $? -eq 0
cat "$work/coverage.out"
# The check itself fails on a table without --format, or with --epochs only at its default.
grep -v '"--format"' "$work/rows.jsonl" >"$work/rows-no-format.jsonl"
coverage "$work/options.jsonl" "$work/rows-no-format.jsonl" >"$work/missed.out"
check "a table without export --format fails the check" \
  grep -q "MISSED: export --format: in no row of the table" "$work/missed.out"
sed 's/"--epochs", "[0-9]*"/"--epochs", "10"/' "$work/rows.jsonl" >"$work/rows-default.jsonl"
coverage "$work/options.jsonl" "$work/rows-default.jsonl" >"$work/missed.out"
check "a table with train --epochs only at its default fails it" \
  grep -q "MISSED: train --epochs: given only at its default, 10" "$work/missed.out"

echo "cli options: $runs runs, $passed passed, $failed failed"
[ "$failed" -eq 0 ]
