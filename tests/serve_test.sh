#!/usr/bin/env bash
# capsnet serve end to end: a model trained here, its JSON API from a client
# (serve_client.py: good and bad requests, 200 concurrent requests, memory),
# the page in headless chromium (browser_test.py), Ctrl-C and SIGTERM, and
# bad options.
# Usage: serve_test.sh CAPSNET MNIST_DIR
set -uo pipefail
capsnet=$1
data=$2
here=$(dirname "$0")
source "$here/test_lib.sh"

# A model that reads digits well enough for the browser's drawings: one
# epoch of 6,000 images (about a minute).
"$capsnet" train --data "$data" --limit 6000 --test-limit 500 --epochs 1 --batch-size 32 \
  --threads 2 --seed 3 --out "$work/run" >"$work/train.out" 2>&1
check "a model to serve" test -s "$work/run/best.pt" || tail -3 "$work/train.out" >&2
ckpt=$work/run/best.pt

# The first 40 test images as an IDX file: capsnet predict's answers are what
# the API must give.
python3 - "$data" "$work/first.idx" <<'PY'
import struct, sys
d = open(sys.argv[1] + "/t10k-images-idx3-ubyte", "rb").read()
open(sys.argv[2], "wb").write(struct.pack(">IIII", 0x803, 40, 28, 28) + d[16:16 + 40 * 784])
PY
"$capsnet" predict --checkpoint "$ckpt" --threads 1 --json "$work/first.idx" >"$work/predict.json"

start_server() { # start_server ARGS...: sets $pid and $port, or fails
  "$capsnet" serve --checkpoint "$ckpt" --port 0 "$@" >"$work/serve.out" 2>"$work/serve.err" &
  pid=$!
  port=""
  for _ in $(seq 1 150); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*/' "$work/serve.out" 2>/dev/null | cut -d: -f3 | tr -d /)
    [ -n "$port" ] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

# --max-batch 8, below the 20 concurrent clients: the first round of requests
# reaches the largest batch there will be. The process keeps freed heap
# (keep_freed_memory), so a batch larger than any before raises RSS without a
# leak, and the client's check that memory stays flat would measure the load
# of the machine (how many requests queue up) instead of leaks.
start_server --threads 1 --timeout 3 --max-batch 8
check "serve prints its URL" test -n "$port" || cat "$work/serve.err" >&2
python3 "$here/serve_client.py" "$port" "$pid" "$data" "$work/predict.json"
check "the API from a client (serve_client.py)" test $? -eq 0

# The page in a real browser: draw test digits with pointer events, read the
# class shown, drag a slider, pick a capsule.
/usr/bin/python3 "$here/browser_test.py" "http://127.0.0.1:$port/" "$data" --index 0 1 3 \
  ${CAPSNET_SCREENSHOT:+--screenshot "$CAPSNET_SCREENSHOT"}
check "the page in headless chromium (browser_test.py)" test $? -eq 0

kill -INT "$pid"
status=0
wait "$pid" || status=$?
check "Ctrl-C stops it cleanly (exit $status)" test "$status" -eq 0
check "and says so" grep -q "SIGINT received, stopping" "$work/serve.err"
check "after counting its answers" grep -q "stopped after [0-9]* answers" "$work/serve.out"

start_server --threads 1
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
check "SIGTERM stops it cleanly (exit $status)" test "$status" -eq 0

# Bad options and a bad checkpoint: a message, a non-zero exit, no server.
start_server --threads 1
busy=$port
expect_fail "a port in use" "cannot listen on 127.0.0.1:$busy" serve --checkpoint "$ckpt" --port "$busy"
kill -TERM "$pid"
wait "$pid"
expect_fail "a host that is not this machine's" "cannot listen on 203.0.113.7" serve --checkpoint "$ckpt" --host 203.0.113.7 --port 0
expect_fail "port 70000" "--port" serve --checkpoint "$ckpt" --port 70000
echo "not a checkpoint" >"$work/bad.pt"
expect_fail "a corrupt checkpoint" "bad.pt" serve --checkpoint "$work/bad.pt" --port 0
expect_fail "no checkpoint" "--checkpoint is required" serve --port 0

echo "serve: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
