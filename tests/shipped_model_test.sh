#!/usr/bin/env bash
# The shipped model (models/README.md) used by default: capsnet eval with no
# --checkpoint evaluates it on the 10,000 MNIST test digits with exactly the
# errors recorded beside it (evaluation is deterministic), predict reads a
# digit with it, and the figures draw from it; each says which model it took.
# Usage: shipped_model_test.sh CAPSNET MNIST_DIR SOURCE_DIR
set -uo pipefail
capsnet=$1
data=$2
card=$3/models/efficient-capsnet-mnist.card.json
source "$(dirname "$0")/test_lib.sh"

said() { grep -q "no --checkpoint given: using the shipped model .*/models/efficient-capsnet-mnist.pt" "$1"; }
"$capsnet" eval --data "$data" --json >"$work/eval.json" 2>"$work/eval.err"
check "eval with no --checkpoint runs" test $? -eq 0 || cat "$work/eval.err" >&2
check "and says it took the shipped model" said "$work/eval.err"
recorded=$(json_get "$card" 'j["test_errors"]')
errors=$(json_get "$work/eval.json" 'j["errors"]')
check "it makes exactly the $recorded errors of 10,000 recorded in its card (made $errors)" \
  test "$errors" = "$recorded" -a "$(json_get "$work/eval.json" 'j["total"]')" = 10000
check "which is at least 99.6% (the issue's bar)" test "$recorded" -le 40
check "its card names the command, commit and machine" \
  test "$(json_get "$card" 'all(j[k] for k in ("command", "commit", "machine"))')" = True

# Test digit 0 (a 7) as a PNG: predict with no --checkpoint reads it.
python3 - "$data" "$work/seven.pgm" <<'PY'
import sys
d = open(sys.argv[1] + "/t10k-images-idx3-ubyte", "rb").read()
open(sys.argv[2], "wb").write(b"P5 28 28 255\n" + d[16:16 + 784])
PY
"$capsnet" predict --json "$work/seven.pgm" >"$work/predict.json" 2>"$work/predict.err"
check "predict with no --checkpoint reads a test 7 as 7" \
  test "$(json_get "$work/predict.json" 'j[0]["prediction"]')" = 7 || cat "$work/predict.err" >&2
check "and says it took the shipped model" said "$work/predict.err"

if "$capsnet" --help | grep -q reconstruct; then # not in a build without figures
  for figure in reconstruct "perturb --index 0" attention; do
    # shellcheck disable=SC2086 # the figure's word and its options
    set -- $figure
    figure=$1
    "$capsnet" "$@" --data "$data" --out "$work/$figure.png" >"$work/$figure.out" 2>"$work/$figure.err"
    check "$figure with no --checkpoint draws from it" test -s "$work/$figure.png" || cat "$work/$figure.err" >&2
    check "and says so" said "$work/$figure.err"
  done
fi

echo "shipped model: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
