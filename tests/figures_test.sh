#!/usr/bin/env bash
# End-to-end runs of the analysis commands on a checkpoint trained here:
# reconstruct, perturb, predict, plot, export (with the PyTorch round trip),
# eval --confusion/--worst; their help and their bad-input cases.
# Usage: figures_test.sh CAPSNET MNIST_DIR SOURCE_DIR
set -uo pipefail

capsnet=$1
mnist=$2
src=$3
source "$(dirname "$0")/test_lib.sh"

py() { python3 -c "$@"; }

for cmd in reconstruct perturb predict plot export; do
  "$capsnet" "$cmd" --help >"$work/help-$cmd"
  check "$cmd --help" test -s "$work/help-$cmd"
done
for option in --checkpoint --out --n --errors --search --data --scale; do
  check "reconstruct --help documents $option" grep -q -- "$option" "$work/help-reconstruct"
done
for option in --index --class --range --step; do
  check "perturb --help documents $option" grep -q -- "$option" "$work/help-perturb"
done
for option in --json --save-preprocessed --precision; do
  check "predict --help documents $option" grep -q -- "$option" "$work/help-predict"
done
"$capsnet" eval --help >"$work/help-eval"
for option in --confusion --worst --precision; do
  check "eval --help documents $option" grep -q -- "$option" "$work/help-eval"
done

# A small real run: two epochs of 512 images.
run="$work/run"
"$capsnet" train --data "$mnist" --limit 512 --test-limit 300 --epochs 2 --threads 2 --out "$run" >"$work/train.log" 2>&1
check "train for the figures" test -s "$run/best.pt"
ckpt="$run/best.pt"

# reconstruct: the error count printed agrees with eval on the same images.
"$capsnet" reconstruct --checkpoint "$ckpt" --data "$mnist" --n 16 --errors 4 --search 300 \
  --out "$work/recon.png" >"$work/recon.txt"
check "reconstruct exits 0" test $? -eq 0
"$capsnet" eval --checkpoint "$ckpt" --data "$mnist" --limit 300 --json >"$work/eval.json"
errors=$(py "import json; print(json.load(open('$work/eval.json'))['errors'])")
check "reconstruct counts eval's errors" grep -q "of $errors misclassified among 300 test images" "$work/recon.txt"
read -r w h < <(png_size "$work/recon.png")
check "recon.png holds 16 columns of 56-pixel cells" test "$w" -ge $((16 * 60)) -a "$h" -ge $((4 * 56))
"$capsnet" reconstruct --checkpoint "$ckpt" --data "$mnist" --n 8 --errors 0 --out "$work/recon8.png" >/dev/null
read -r w8 h8 < <(png_size "$work/recon8.png")
check "fewer digits, smaller figure" test "$w8" -lt "$w" -a "$h8" -lt "$h"

# perturb: 16 rows of 11 reconstructions; a narrower range gives fewer columns.
"$capsnet" perturb --checkpoint "$ckpt" --data "$mnist" --index 3 --out "$work/perturb.png" >"$work/perturb.txt"
check "perturb reports 16 x 11" grep -q "16 dimensions x 11 steps" "$work/perturb.txt"
read -r pw ph < <(png_size "$work/perturb.png")
check "perturb.png has 18 rows of 56-pixel cells" test "$ph" -ge $((18 * 56))
"$capsnet" perturb --checkpoint "$ckpt" --data "$mnist" --index 3 --range 0.1 --out "$work/perturb5.png" >"$work/perturb5.txt"
check "range 0.1 gives 5 steps" grep -q "16 dimensions x 5 steps" "$work/perturb5.txt"
read -r pw5 _ < <(png_size "$work/perturb5.png")
check "fewer steps, narrower figure" test "$pw5" -lt "$pw"
expect_fail "perturb index past the end" "past the end" perturb --checkpoint "$ckpt" --data "$mnist" --index 10000
expect_fail "perturb bad class" "classes" perturb --checkpoint "$ckpt" --data "$mnist" --index 0 --class 12

# plot: two epochs from metrics.jsonl, a fixed-size figure.
"$capsnet" plot "$run" --out "$work/curves.png" >"$work/plot.txt"
check "plot reports 2 epochs" grep -q "2 epochs" "$work/plot.txt"
check "curves.png is 864x354" test "$(png_size "$work/curves.png")" = "864 354"
expect_fail "plot without metrics" "not found" plot "$work" --out "$work/x.png"
mkdir -p "$work/badrun" && echo '{"epoch": 1}' >"$work/badrun/metrics.jsonl"
expect_fail "plot of a malformed row names the line" "metrics.jsonl:1" plot "$work/badrun" --out "$work/x.png"

# eval --confusion and --worst.
"$capsnet" eval --checkpoint "$ckpt" --data "$mnist" --limit 300 --confusion "$work/conf.png" \
  --worst 8 "$work/worst.png" >"$work/eval.txt"
check "eval prints the confusion matrix" grep -q "confusion matrix (rows: true class" "$work/eval.txt"
check "confusion rows sum to 300" test "$(py "
import re
rows = [l.split() for l in open('$work/eval.txt') if re.match(r'^\s+\d+(\s+\d+){10}\s*$', l)]
print(len(rows) == 10 and sum(int(x) for r in rows for x in r[1:]) == 300)")" = True
check "confusion.png written" test "$(png_size "$work/conf.png" | cut -d' ' -f2)" -gt 400
check "worst.png written" test -s "$work/worst.png"
"$capsnet" eval --checkpoint "$ckpt" --data "$mnist" --limit 300 --json >"$work/eval2.json"
check "eval --json has the confusion matrix" test "$(py "import json; j=json.load(open('$work/eval2.json')); c=j['confusion']; print(sum(map(sum, c)) == 300 and sum(c[i][i] for i in range(10)) == 300 - j['errors'])")" = True
expect_fail "worst needs a count" "count from 1 to 1024" eval --checkpoint "$ckpt" --data "$mnist" --worst many "$work/w.png"

# predict: IDX images as they are; a picture of the same digit, preprocessed.
py "
import struct
d = open('$mnist/t10k-images-idx3-ubyte', 'rb').read()
open('$work/few.idx', 'wb').write(struct.pack('>IIII', 0x803, 12, 28, 28) + d[16:16 + 12 * 784])
# Test digit 0, five times larger, dark on a light 200x160 background, off centre.
img = d[16:16 + 784]
W, H = 200, 160
out = bytearray([235] * (W * H))
for y in range(140):
    for x in range(140):
        out[(y + 10) * W + x + 50] = int(235 - img[(y // 5) * 28 + x // 5] * 0.8)
open('$work/seven.pgm', 'wb').write(b'P5\n%d %d\n255\n' % (W, H) + bytes(out))
"
"$capsnet" predict --checkpoint "$ckpt" "$work/few.idx" --json >"$work/few.json"
check "predict on IDX exits 0" test $? -eq 0
check "predict gives 12 rows of 10 lengths" test "$(py "import json; j=json.load(open('$work/few.json')); print(len(j) == 12 and all(len(r['lengths']) == 10 and r['prediction'] == max(range(10), key=lambda k: r['lengths'][k]) for r in j))")" = True
"$capsnet" predict --checkpoint "$ckpt" "$work/seven.pgm" --save-preprocessed "$work/pre" >"$work/seven.txt"
check "predict prints the class and ten lengths" grep -q "seven.pgm: [0-9] (length 0\.[0-9]*)" "$work/seven.txt"
# What the network saw is test digit 0 again: correlation with the IDX digit.
check "the photo is preprocessed back into the MNIST digit" test "$(py "
import struct, zlib
def read_gray_png(path):  # 8-bit grayscale PNG, any filter
    d = open(path, 'rb').read()
    w, h = struct.unpack('>II', d[16:24])
    pos, raw = 8, b''
    while pos < len(d):
        n, kind = struct.unpack('>I4s', d[pos:pos + 8])
        if kind == b'IDAT': raw += d[pos + 8:pos + 8 + n]
        pos += 12 + n
    raw, rows, prev = zlib.decompress(raw), [], [0] * w
    for y in range(h):
        f, line, row = raw[y * (w + 1)], raw[y * (w + 1) + 1:(y + 1) * (w + 1)], []
        for x in range(w):
            a, b = (row[x - 1] if x else 0), prev[x]
            c = prev[x - 1] if x else 0
            p = a + b - c
            pred = [0, a, b, (a + b) // 2, min((a, b, c), key=lambda v: (abs(p - v), [a, b, c].index(v)))][f]
            row.append((line[x] + pred) & 255)
        rows.append(row)
        prev = row
    return [v for r in rows for v in r]
seen = read_gray_png('$work/pre/0-seven_pgm.png')
orig = list(open('$mnist/t10k-images-idx3-ubyte', 'rb').read()[16:16 + 784])
ms, mo = sum(seen) / 784, sum(orig) / 784
cov = sum((s - ms) * (o - mo) for s, o in zip(seen, orig))
corr = cov / (sum((s - ms) ** 2 for s in seen) * sum((o - mo) ** 2 for o in orig)) ** 0.5
print(corr > 0.9 or corr)")" = True
check "preprocessed image saved as 28x28" test "$(png_size "$work/pre/0-seven_pgm.png")" = "28 28"
echo "not an image" >"$work/bad.png"
: >"$work/empty.png"
status=0
"$capsnet" predict --checkpoint "$ckpt" "$work/bad.png" "$work/seven.pgm" "$work/empty.png" --json >"$work/mixed.json" 2>"$work/mixed.err" || status=$?
check "bad files make predict exit 1" test "$status" -eq 1
check "the good image is still classified" test "$(py "import json; j=json.load(open('$work/mixed.json')); print(len(j) == 3 and 'error' in j[0] and len(j[1]['lengths']) == 10 and 'empty' in j[2]['error'])")" = True
check "bad file named on stderr" grep -q "bad.png: not an image" "$work/mixed.err"

# export, and the same predictions from the seed's model in PyTorch.
"$capsnet" export --checkpoint "$ckpt" --out "$work/model.pth" >"$work/export.txt"
check "export lists conv2.weight" grep -q "conv2.weight .*\[256, 256, 9, 9\]" "$work/export.txt"
check "export writes the config beside" test -s "$work/model.json"
/usr/bin/python3 "$src/tests/export_roundtrip.py" "$work/model.pth" "$work/few.idx" "$work/few.json" >"$work/roundtrip.txt" 2>&1
check "PyTorch loads the export and predicts as C++ does" test $? -eq 0
cat "$work/roundtrip.txt"
expect_fail "export to .json refused" "another extension" export --checkpoint "$ckpt" --out "$work/m.json"
expect_fail "export of a missing checkpoint" "not found" export --checkpoint "$work/none.pt"

echo "figures: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
