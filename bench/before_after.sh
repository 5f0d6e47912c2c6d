#!/usr/bin/env bash
# Alternates `capsnet bench` of two binaries (e.g. before and after a
# refactoring) ROUNDS times in one run, so that both see the same machine
# state, and prints each round's training and inference images/s and the
# medians. Usage: bench/before_after.sh BEFORE AFTER [ROUNDS] [bench args...]
set -euo pipefail
before=$1 after=$2 rounds=${3:-3}
shift $(( $# < 3 ? $# : 3 ))
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--batch-size 64 --steps 5 --warmup 1 --threads 2)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq 1 "$rounds"); do
  for which in before after; do
    bin=$before; [ "$which" = after ] && bin=$after
    "$bin" bench "${args[@]}" --json >"$tmp/$which-$r.json"
  done
done
python3 - "$tmp" "$rounds" "$before" "$after" "${args[*]}" <<'PY'
import json, statistics, sys
tmp, rounds, before, after, args = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
rows = {w: [json.load(open(f"{tmp}/{w}-{r}.json")) for r in range(1, rounds + 1)] for w in ("before", "after")}
def key(j, k):
    for name in (k, k.replace("images_per_second", "img_per_s")):
        if name in j: return j[name]
    raise KeyError(k)
print(f"capsnet bench {args}, {rounds} rounds alternated: before={before} after={after}")
for k in ("train_images_per_second", "inference_images_per_second"):
    b = [key(j, k) for j in rows["before"]]; a = [key(j, k) for j in rows["after"]]
    print(f"{k}: before {', '.join(f'{x:.1f}' for x in b)} (median {statistics.median(b):.1f}); "
          f"after {', '.join(f'{x:.1f}' for x in a)} (median {statistics.median(a):.1f}); "
          f"after/before {statistics.median(a) / statistics.median(b):.3f}")
PY
