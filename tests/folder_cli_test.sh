#!/usr/bin/env bash
# Your own pictures (--dataset folder), end to end: MNIST exported as PNG
# folders (the pixels checked by an independent PNG reader) trains and
# evaluates as the IDX files do; a colour set where shape is the label; the
# checkpoint's class names, statistics and split; resume on changed data;
# streaming beyond the cache; bad data.
# Usage: folder_cli_test.sh CAPSNET MNIST_DIR SOURCE_DIR
set -uo pipefail

capsnet=$1
mnist=$2
source_dir=$3
source "$(dirname "$0")/test_lib.sh"
png_tool="$source_dir/tests/png_tool.py"

# export-folder: MNIST as PNG, the same pixels and labels as the IDX files.
"$capsnet" data export-folder --data "$mnist" --out "$work/mf" --limit 2000 --test-limit 500 >"$work/export.log"
check "export-folder exits 0" test $? -eq 0
check "export-folder writes a class folder per digit" test -d "$work/mf/train/9" -a -d "$work/mf/test/0"
check "export-folder says how to train on it" grep -q "capsnet train --dataset folder --data" "$work/export.log"
python3 "$png_tool" compare-idx "$mnist" "$work/mf" >"$work/compare.log" 2>&1
check "exported PNGs hold the IDX pixels and labels" grep -q "compared 2500 pictures" "$work/compare.log"
# The comparison can fail: one picture moved to another index.
cp -r "$work/mf" "$work/mf-bad"
first=$(ls "$work/mf-bad/test/7" | head -1)
mv "$work/mf-bad/test/7/$first" "$work/mf-bad/test/7/00001.png"
check "a picture under another index fails the comparison" \
  bash -c "! python3 '$png_tool' compare-idx '$mnist' '$work/mf-bad' >/dev/null 2>&1"
expect_fail "export-folder refuses a folder that is not empty" "not an empty folder" \
  data export-folder --data "$mnist" --out "$work/mf" --limit 10
expect_fail "export-folder refuses two labels per picture" "multimnist not in" \
  data export-folder --dataset multimnist --data "$mnist" --out "$work/mm"

# The same budget on the IDX files and on their folders.
common=(--epochs 1 --batch-size 32 --threads 2 --seed 3)
"$capsnet" train --data "$mnist" --limit 2000 --test-limit 500 "${common[@]}" --out "$work/idx" >"$work/idx.log" 2>&1
check "train on IDX" test $? -eq 0
"$capsnet" train --dataset folder --data "$work/mf" "${common[@]}" --out "$work/fold" >"$work/fold.log" 2>&1
check "train on the folder" test $? -eq 0
check "the run names the folder's classes" grep -q "10 classes (0, 1, 2" "$work/fold.log"
"$capsnet" eval --checkpoint "$work/idx/last.pt" --limit 500 --json >"$work/e-idx.json" 2>/dev/null
"$capsnet" eval --checkpoint "$work/fold/last.pt" --json >"$work/e-fold.json" 2>/dev/null
a=$(json_get "$work/e-idx.json" "j['accuracy']")
b=$(json_get "$work/e-fold.json" "j['accuracy']")
echo "accuracy after 2,000 images: IDX $a, folder $b"
# One epoch of 2,000 images in another example order (the folder's is by
# class): orders and seeds move this by a few points.
check "IDX and folder training reach the same accuracy within noise (10 points)" \
  python3 -c "import sys; a, b = map(float, sys.argv[1:]); sys.exit(not (a > 0.7 and b > 0.7 and abs(a - b) < 0.1))" "$a" "$b"
# One model on the IDX test images and on their PNGs: the same predictions.
"$capsnet" eval --checkpoint "$work/idx/last.pt" --dataset folder --data "$work/mf" --json \
  >"$work/e-cross.json" 2>/dev/null
check "the IDX model on the folder's PNGs makes the IDX errors" python3 -c "
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(not (a['errors'] == b['errors'] and a['total'] == b['total'] == 500 and abs(a['loss'] - b['loss']) < 1e-5))
" "$work/e-idx.json" "$work/e-cross.json"

# JPEG files.
"$capsnet" data export-folder --data "$mnist" --out "$work/mj" --limit 20 --test-limit 500 --format jpeg >/dev/null
check "export-folder --format jpeg writes JPEG" bash -c "head -c 3 '$work/mj/test/0/'$(ls "$work/mj/test/0" | head -1) | od -An -tx1 | grep -q 'ff d8 ff'"
"$capsnet" eval --checkpoint "$work/idx/last.pt" --dataset folder --data "$work/mj" --json >"$work/e-jpeg.json" 2>/dev/null
check "the IDX model reads JPEG digits about as well (within 5 points)" python3 -c "
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
sys.exit(not abs(a['accuracy'] - b['accuracy']) < 0.05)
" "$work/e-idx.json" "$work/e-jpeg.json"

# A colour set: shape is the label, colour a nuisance; no train/ and test/.
python3 "$png_tool" shapes "$work/shapes" 100 24 7
"$capsnet" train --dataset folder --data "$work/shapes" --epochs 2 --batch-size 16 --threads 2 \
  --out "$work/colour" >"$work/colour.log" 2>&1
check "train on the colour set" test $? -eq 0
check "the run holds out 10% of each class" grep -q "270 training pictures; 10% of each class held out" "$work/colour.log"
check "the run finds colour (3 channels)" grep -q "24x24, 3 channels" "$work/colour.log"
best=$(grep -o "best test accuracy [0-9.]*" "$work/colour.log" | grep -o "[0-9.]*$")
echo "colour shapes, 2 epochs: best test accuracy $best%"
check "the network learns the shapes whatever their colour (>= 70%, chance 33%)" \
  python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= 70)" "$best"
check "config.json records the class names" \
  test "$(json_get "$work/colour/config.json" "','.join(j['data_shape']['class_names'])")" = "horizontal,ring,vertical"
check "config.json records three channels' statistics" \
  test "$(json_get "$work/colour/config.json" "len(j['data_shape']['mean'])")" = 3
"$capsnet" eval --checkpoint "$work/colour/last.pt" --json >"$work/e-colour.json" 2>/dev/null
check "eval names the classes" test "$(json_get "$work/e-colour.json" "j['per_class'][1]['name']")" = ring
check "eval tests on the recorded split (30 pictures)" test "$(json_get "$work/e-colour.json" "j['total']")" = 30
"$capsnet" eval --checkpoint "$work/colour/last.pt" >"$work/e-colour.txt" 2>/dev/null
check "eval's text names the classes" grep -q "1 ring" "$work/e-colour.txt"
"$capsnet" predict --checkpoint "$work/colour/last.pt" "$work/shapes/ring/ring 000.png" >"$work/predict.txt"
check "predict prints a class name and its length" grep -Eq ": (horizontal|ring|vertical) \(length 0\.[0-9]+\)" "$work/predict.txt"
check "predict lists the lengths by name" grep -q "ring:0\." "$work/predict.txt"
"$capsnet" predict --checkpoint "$work/colour/last.pt" --json "$work/shapes/vertical/vertical 000.png" >"$work/predict.json"
check "predict --json gives class_name" python3 -c "
import json, sys
row = json.load(open(sys.argv[1]))[0]
sys.exit(row['class_name'] not in ('horizontal', 'ring', 'vertical'))" "$work/predict.json"

# Beyond the cache: every picture decoded for each batch, the same run.
"$capsnet" train --dataset folder --data "$work/shapes" --epochs 1 --batch-size 16 --threads 2 \
  --out "$work/cached" >"$work/cached.log" 2>&1
"$capsnet" train --dataset folder --data "$work/shapes" --epochs 1 --batch-size 16 --threads 2 \
  --cache-mb 0 --out "$work/streamed" >"$work/streamed.log" 2>&1
check "--cache-mb 0 decodes per batch" grep -q "0 held in memory (--cache-mb 0)" "$work/streamed.log"
check "streamed and cached training end alike" test "$(grep -o 'test loss [0-9.]* acc [0-9.]*%' "$work/cached.log")" = \
  "$(grep -o 'test loss [0-9.]* acc [0-9.]*%' "$work/streamed.log")"

# The split is the checkpoint's; changed data stops a resume unless --force.
python3 "$png_tool" shapes "$work/more" 3 24 8
cp "$work/more/ring/"*.png "$work/shapes/ring/"
"$capsnet" eval --checkpoint "$work/colour/last.pt" --json >"$work/e-more.json" 2>/dev/null
check "eval after files were added still tests on the recorded 30" \
  test "$(json_get "$work/e-more.json" "j['total']")" = 30
expect_fail "resume on changed data is refused" "pass --force" train --resume "$work/colour" --epochs 3
"$capsnet" train --resume "$work/colour" --epochs 3 --force >"$work/forced.log" 2>&1
check "resume --force goes on" grep -q "epoch 3/3" "$work/forced.log"

# The paper's CIFAR-10 network shape on 32x32 colour pictures.
python3 "$png_tool" shapes "$work/cifar-like" 8 32 9
"$capsnet" train --preset cifar10 --data "$work/cifar-like" --epochs 1 --batch-size 8 --threads 2 \
  --out "$work/cifar" >"$work/cifar.log" 2>&1
check "--preset cifar10 trains" test $? -eq 0
check "--preset cifar10: 24x24 crops of 32x32 colour pictures, 64 primary capsule types" \
  python3 -c "
import json, sys
c = json.load(open(sys.argv[1]))
m, f = c['model'], c['folder']
sys.exit(not (c['dataset'] == 'folder' and m['primary_types'] == 64 and m['image_size'] == 24 and
              m['in_channels'] == 3 and f['image_size'] == 32 and f['crop'] == 24 and f['augment']
              and c['shift'] == 0 and c['data_shape']['resize'] == 32))" "$work/cifar/config.json"

# Bad data: each case named.
expect_fail "--dataset folder needs --data" "needs --data DIR" train --dataset folder
expect_fail "a missing folder" "no such folder" train --dataset folder --data "$work/none"
mkdir -p "$work/one/cat" && cp "$work/shapes/ring/ring 000.png" "$work/shapes/ring/ring 001.png" "$work/one/cat/"
expect_fail "a single class" "only one class folder (cat)" train --dataset folder --data "$work/one" --out "$work/r1"
mkdir -p "$work/tt/train/a" "$work/tt/train/b" "$work/tt/test/a" "$work/tt/test/b" "$work/tt/test/c"
for d in train/a train/b test/a test/b test/c; do cp "$work/shapes/ring/ring 000.png" "$work/tt/$d/"; done
expect_fail "a test class not in train/" "class 'c' is not in train/" train --dataset folder --data "$work/tt" --out "$work/r2"
cp -r "$work/shapes" "$work/broken"
printf 'not a picture' >"$work/broken/ring/notes.txt"
printf '\x89PNG\r\n\x1a\ngarbage' >"$work/broken/ring/corrupt.png"
: >"$work/broken/vertical/empty.png"
"$capsnet" train --dataset folder --data "$work/broken" --epochs 1 --batch-size 32 --threads 2 \
  --out "$work/r3" >"$work/broken.log" 2>&1
check "broken files are skipped and the run goes on" test $? -eq 0
check "the files skipped while listing are counted and named" \
  grep -q "skipped [23] files.*ring/notes.txt: not a picture.*vertical/empty.png: the file is empty" "$work/broken.log"
check "a corrupt picture is named where it is found" grep -q "ring/corrupt.png: " "$work/broken.log"
expect_fail "--strict makes them an error" "cannot be used (--strict)" \
  train --dataset folder --data "$work/broken" --strict --out "$work/r4"
expect_fail "--channels takes auto, 1 or 3" "channels" train --dataset folder --data "$work/shapes" --channels 2
expect_fail "--crop beyond the image size" "larger than" \
  train --dataset folder --data "$work/shapes" --image-size 20 --crop 24 --out "$work/r5"
expect_fail "--augment is for folders" "apply to --dataset folder" train --data "$mnist" --augment --out "$work/r6"

echo "folder: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
