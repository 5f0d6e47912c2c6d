#!/usr/bin/env bash
# capsnet serve under load: POST /api/predict at 1 and 20 concurrent clients,
# fp32 and (where the CPU has it) bf16; requests per second, p50/p99 latency,
# mean batch, server memory at rest, at peak and after (bench/serve_load.py);
# and 20 clients with batching off (--max-batch 1), to see what it gains.
# The Python client runs on the same cores as the server.
# Usage: bench/serve.sh CHECKPOINT [CAPSNET] [DATA] [SECONDS]
set -euo pipefail
ckpt=${1:?usage: bench/serve.sh CHECKPOINT [CAPSNET] [DATA] [SECONDS]}
capsnet=${2:-./build/capsnet}
data=${3:-data/mnist}
seconds=${4:-15}
here=$(dirname "$0")
log=$(mktemp)
trap 'rm -f "$log"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"
echo "checkpoint: $ckpt; $seconds s per row"
for config in "fp32 64 1 20" "bf16 64 1 20" "fp32 1 20"; do
  read -r precision max_batch clients_list <<<"$config"
  echo "--precision $precision --max-batch $max_batch"
  "$capsnet" serve --checkpoint "$ckpt" --port 0 --precision "$precision" --max-batch "$max_batch" >"$log" 2>&1 &
  pid=$!
  port=""
  for _ in $(seq 1 300); do
    port=$(grep -o 'http://127.0.0.1:[0-9]*/' "$log" | cut -d: -f3 | tr -d /) && [ -n "$port" ] && break
    sleep 0.1
  done
  grep -q "bf16 on" "$log" || [ "$precision" = fp32 ] || { echo "bf16: not on this CPU ($(grep -m1 . "$log"))"; kill "$pid"; wait "$pid" || true; continue; }
  for clients in $clients_list; do
    python3 "$here/serve_load.py" "$port" "$pid" "$data" "$clients" "$seconds"
  done
  kill -INT "$pid"
  wait "$pid" || true
  pid=""
done
