#!/usr/bin/env bash
# make fuzz: builds the libFuzzer targets with clang-16 (installing it and
# libFuzzer from Debian when missing), writes the seed corpora from real files,
# and runs each target for SECONDS seconds on 1 worker per core, then prints
# executions and findings per target. Crashes and hangs (5 s per input) are
# saved in build-fuzz/findings/TARGET/ and make this script fail.
# Usage: fuzz/run.sh [SECONDS]
set -euo pipefail
seconds=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
mnist=${MNIST:-$root/data/mnist}

need=()
command -v clang++-16 >/dev/null || need+=(clang-16)
for p in libfuzzer-16-dev libclang-rt-16-dev; do # libclang-rt: the sanitizer and fuzzer runtimes
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "fuzz: installing ${need[*]}"
  sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

CXX=clang++-16 cmake -S "$root/fuzz" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)"

corpus=$build/corpus
rm -rf "$corpus"
mkdir -p "$corpus"/{idx,image,metrics,options,cli,serve_api}
cp "$root"/fuzz/corpus/cli/* "$corpus/cli/"
cp "$root"/fuzz/corpus/image/* "$corpus/image/"
cp "$root"/fuzz/corpus/metrics/* "$corpus/metrics/"
cp "$root"/fuzz/corpus/options/* "$corpus/options/"
cp "$root"/fuzz/corpus/serve_api/* "$corpus/serve_api/"
ASAN_OPTIONS=detect_leaks=0 "$build/make_seeds" "$mnist" "$corpus"

export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 # LibTorch keeps allocations for the process
status=0
all=0
printf '%-14s %14s %10s %8s\n' target executions exec/s findings
targets=${FUZZ_TARGETS:-idx image metrics options cli serve_api}
for target in $targets; do
  findings=$build/findings/$target
  max_len=65536
  [ "$target" = cli ] && max_len=4096 # one argument a line, at most 64 of them
  rm -rf "$findings" && mkdir -p "$findings"
  log=$build/fuzz_$target.log
  # -fork: one worker per core; a crash or hang is kept and the run goes on.
  "$build/fuzz_$target" "$corpus/$target" -fork="$(nproc)" -ignore_crashes=1 -ignore_timeouts=1 \
    -max_total_time="$seconds" -timeout=5 -rss_limit_mb=4096 -max_len="$max_len" \
    -artifact_prefix="$findings/" >"$log" 2>&1 || true
  # Fork mode's status lines: "#EXECS: cov: ... oom/timeout/crash: A/B/C ...".
  total=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  total=${total:-0}
  bad=$(grep -o 'oom/timeout/crash: [0-9/]*' "$log" | tail -1 | grep -o '[0-9/]*$' || true)
  rate=$(python3 -c "print(int($total / $seconds))")
  found=$(find "$findings" -type f | wc -l)
  printf '%-14s %14s %10s %8s  (oom/timeout/crash %s)\n' "$target" "$total" "$rate" "$found" "${bad:-0/0/0}"
  all=$((all + total))
  [ "$found" -eq 0 ] || status=1
done
echo "fuzz: $all executions in all"
[ "$status" -eq 0 ] && echo "fuzz: no crash and no hang" || echo "fuzz: findings in $build/findings" >&2
exit $status
