#!/usr/bin/env bash
# Own pictures learn with the default options: a three-class colour set of
# mixed sizes (32 to 64 pixels wide and high, so a median side of about 41),
# light shapes on darker backgrounds of random colours, as a user's folder
# gives them. CapsNet (calibrated start) and Efficient-CapsNet (precise batch
# norm) learn it with nothing but --epochs; without the calibration, CapsNet
# saturates and the trainer says it is not learning. --validation-split
# chooses best.pt on held-out pictures and keeps them on --resume.
# Usage: own_folder_learning_test.sh CAPSNET SOURCE_DIR
set -uo pipefail
capsnet=$1
source_dir=$2
source "$(dirname "$0")/test_lib.sh"

python3 "$source_dir/tests/png_tool.py" shapes "$work/own" 100 32 21 64
final_test_accuracy() { # the last epoch's, in percent
  python3 -c "import json, sys; rows = [json.loads(l) for l in open(sys.argv[1])]; print(100 * rows[-1]['test_accuracy'])" "$1"
}
at_least() { python3 -c "import sys; sys.exit(not float(sys.argv[1]) >= float(sys.argv[2]))" "$1" "$2"; }

# CapsNet, the defaults: the colour backgrounds need the calibrated start.
"$capsnet" train --dataset folder --data "$work/own" --epochs 8 --out "$work/capsnet" \
  >"$work/capsnet.log" 2>&1
check "CapsNet trains on the folder with the defaults" test $? -eq 0
check "the pictures are 41 pixels (the median side), in colour" \
  grep -q "270 training pictures; 10% of each class held out for testing (seed 1); 41x41, 3 channels" \
  "$work/capsnet.log"
check "the start is calibrated and says by how much" grep -q "calibrated the start" "$work/capsnet.log"
check "config.json records the routing's input scale" \
  python3 -c "import json, sys; s = json.load(open(sys.argv[1]))['model']['routing_input_scale']; sys.exit(not 0 < s < 1)" \
  "$work/capsnet/config.json"
capsnet_accuracy=$(final_test_accuracy "$work/capsnet/metrics.jsonl")
echo "CapsNet, defaults, 8 epochs: test accuracy $capsnet_accuracy% (chance 33%)"
check "CapsNet reaches 90% with the defaults within 8 epochs" at_least "$capsnet_accuracy" 90
check "a run that learns is not told it does not" bash -c "! grep -q 'not learning' '$work/capsnet.log'"
"$capsnet" eval --checkpoint "$work/capsnet/last.pt" --json >"$work/capsnet-eval.json" 2>/dev/null
check "eval of the calibrated checkpoint makes the run's last test accuracy" python3 -c "
import json, sys
e = json.load(open(sys.argv[1]))
sys.exit(not abs(100 * e['accuracy'] - float(sys.argv[2])) < 1e-6)" "$work/capsnet-eval.json" "$capsnet_accuracy"

# Efficient-CapsNet, the defaults: its batch norms' statistics are recomputed each epoch.
"$capsnet" train --dataset folder --data "$work/own" --model efficient-capsnet --epochs 10 \
  --out "$work/efficient" >"$work/efficient.log" 2>&1
check "Efficient-CapsNet trains on the folder with the defaults" test $? -eq 0
efficient_accuracy=$(final_test_accuracy "$work/efficient/metrics.jsonl")
echo "Efficient-CapsNet, defaults, 10 epochs: test accuracy $efficient_accuracy%"
check "Efficient-CapsNet reaches 85% with the defaults within 10 epochs" at_least "$efficient_accuracy" 85
check "Efficient-CapsNet's run is not told it does not learn" \
  bash -c "! grep -q 'not learning' '$work/efficient.log'"

# Without the calibration, the same data saturates CapsNet in its first steps.
"$capsnet" train --dataset folder --data "$work/own" --epochs 1 --calibrate-init false \
  --out "$work/saturated" >"$work/saturated.log" 2>&1
check "the uncalibrated run finishes its epoch" test $? -eq 0
check "the trainer says it is not learning, why, and what helps" \
  grep -q "not learning: after epoch 1 .* saturated .* --calibrate-init true" "$work/saturated.log"

# --validation-split: best.pt is chosen on 27 held-out pictures, the same after --resume.
"$capsnet" train --dataset folder --data "$work/own" --model efficient-capsnet --epochs 2 \
  --validation-split 27 --out "$work/val" >"$work/val.log" 2>&1
check "a run with a validation split trains" test $? -eq 0
check "it says what best.pt is chosen on" \
  grep -q "training on 243 folder images, choosing best.pt on 27 held out, testing on 30" "$work/val.log"
"$capsnet" train --resume "$work/val" --epochs 3 >"$work/val-resume.log" 2>&1
check "the run resumes" test $? -eq 0
check "the resumed run holds out the same 27" grep -q "choosing best.pt on 27 held out" "$work/val-resume.log"
check "best.pt follows the validation accuracy, every epoch reports both" python3 -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + '/metrics.jsonl')]
assert len(rows) == 3, rows
best, chosen = -1, []
for r in rows:
    assert r['val_size'] == 27 and r['test_size'] == 30, r
    if r['val_accuracy'] > best:
        best = r['val_accuracy']
        chosen.append(r['epoch'])
    assert (r.get('best') == 1) == (chosen[-1] == r['epoch']), r
" "$work/val"
check "the done line names best.pt's epoch and its test accuracy" \
  grep -q "done: best.pt is epoch [1-3], chosen on the validation split" "$work/val-resume.log"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
