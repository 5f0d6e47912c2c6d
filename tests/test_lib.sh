# Helpers of the end-to-end tests (cli_test.sh, figures_test.sh, experiments_cli_test.sh, ...).
# Expects $capsnet (the binary); sets up $work (removed on exit) and counts
# $passed / $failed.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

# free_port: a TCP port for a rendezvous (MASTER_PORT) that is free now, drawn
# from 20000-32767, below Linux's ephemeral range (32768-60999). A port the
# kernel hands out (bind to port 0) can be handed out again as the source port
# of another test's connection before rank 0 binds it: under ctest -j, beside
# cli_serve's thousands of requests, cli_options' launch rank 0 found its
# port 60757 taken that way (errno 98) in a fresh-clone make test at 6dbcbfa.
free_port() {
  python3 -c '
import random, socket
for _ in range(200):
    port = random.randrange(20000, 32768)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); print(port); break
    except OSError:
        pass
    finally:
        s.close()
'
}

check() { # check NAME COMMAND...: the command must succeed
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $name" >&2
  fi
}

# expect_fail NAME PATTERN ARGS...: capsnet ARGS must exit non-zero and print PATTERN on stderr.
expect_fail() {
  local name=$1 pattern=$2
  shift 2
  local status=0
  # A command that should fail but runs on (a server that did start) is
  # stopped after 10 minutes, under ctest's 15, and counted as a failure.
  timeout 600 "$capsnet" "$@" >"$work/out" 2>"$work/err" || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 124 ] && grep -q -- "$pattern" "$work/err"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $name (exit $status; wanted '$pattern' on stderr)" >&2
    cat "$work/err" >&2
  fi
}

# weights_close A.pt B.pt RTOL ATOL [ADAM_STEPS]: the checkpoints' weights
# agree (exported to PyTorch, compared as torch.allclose does); prints the
# largest difference. ADAM_STEPS: the runs took that many Adam steps apart
# (lr 1e-3) with sums in another order. Adam divides each gradient by its
# running RMS, so a weight whose gradient sums to about zero (a decoder column
# of a class the batches barely hold) moves by up to lr a step in whichever
# direction rounding gives it: up to 1e-3 of a tensor's weights may then
# differ by more than RTOL/ATOL, each by at most 2 lr a step (Kingma & Ba,
# Sec. 2.1: an Adam step is at most about lr).
weights_close() {
  "$capsnet" export --checkpoint "$1" --out "$work/a.pth" >/dev/null &&
    "$capsnet" export --checkpoint "$2" --out "$work/b.pth" >/dev/null &&
    /usr/bin/python3 - "$work/a.pth" "$work/b.pth" "$3" "$4" "${5:-0}" <<'EOF'
import sys, torch
a, b = torch.load(sys.argv[1]), torch.load(sys.argv[2])
rtol, atol, steps = float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
assert a.keys() == b.keys()
worst = max((a[k] - b[k]).abs().max().item() for k in a)
ok, outliers = True, 0
for k in a:
    diff = (a[k] - b[k]).abs()
    out = diff > atol + rtol * b[k].abs()
    outliers += int(out.sum())
    if steps == 0:
        ok &= not bool(out.any())
    else:
        ok &= out.float().mean().item() <= 1e-3 and diff.max().item() <= 2e-3 * steps
print(f"  largest weight difference {worst:.3g} (rtol {rtol}, atol {atol}); "
      f"{outliers} weights outside")
sys.exit(0 if ok else 1)
EOF
}

# Helpers of the multi-process tests (distributed, elastic, two hosts).
rank_pid() { # rank_pid PARENT_PID RANK: the PID of that rank among the parent's children
  local child
  for child in $(pgrep -P "$1"); do
    if tr '\0' '\n' 2>/dev/null <"/proc/$child/environ" | grep -qx "RANK=$2"; then
      echo "$child"
      return
    fi
  done
}

wait_for() { # wait_for SECONDS COMMAND...: until the command succeeds
  local tries=$(($1 * 5))
  shift
  for _ in $(seq "$tries"); do
    "$@" && return 0
    sleep 0.2
  done
  return 1
}

has_rows() { [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$2" ]; }

# wait_checkpoint RUN_DIR N: until metrics.jsonl has N rows and last.pt exists (at most 150 s).
wait_checkpoint() { wait_for 120 has_rows "$1" "$2" && wait_for 30 test -f "$1/last.pt"; }

metric() { # metric RUN_DIR EPOCH FIELD: a field of the run's metrics.jsonl row of that epoch
  python3 -c "import json,sys; rows=[json.loads(l) for l in open(sys.argv[1])]; print(rows[int(sys.argv[2])-1][sys.argv[3]])" "$1/metrics.jsonl" "$2" "$3"
}

json_get() { # json_get FILE PYTHON-EXPRESSION-ON-j
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

png_size() { # png_size FILE -> "W H" from the IHDR chunk
  python3 -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); assert d[:8]==b'\x89PNG\r\n\x1a\n'; print(*struct.unpack('>II', d[16:24]))" "$1"
}

png_colours() { # png_colours FILE -> "RED GREEN COLOURED": pixels mostly red, mostly green, not gray (8-bit RGB/RGBA PNG)
  python3 - "$1" <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
pos, idat = 8, b''
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b'IHDR':
        w, h, depth, ctype = struct.unpack('>IIBB', body[:10])
    elif kind == b'IDAT':
        idat += body
    pos += 12 + n
assert depth == 8 and ctype in (2, 6), (depth, ctype)
bpp = 3 if ctype == 2 else 4
raw, stride = zlib.decompress(idat), w * bpp
prev, rows, i = bytearray(stride), [], 0
for _ in range(h):
    f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
    i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b, c = prev[x], prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(line)
    prev = line
red = green = coloured = 0
for line in rows:
    for x in range(0, stride, bpp):
        r, g, b = line[x], line[x + 1], line[x + 2]
        red += r > 128 and g < 64
        green += g > 128 and r < 64
        coloured += r != b or g != b
print(red, green, coloured)
PY
}
