#!/usr/bin/env bash
# A build without figures (-DCAPSNET_WITH_FIGURES=OFF, as scripts/gpu-run.sh
# builds): the commands and options it left out fail with a message that says
# why, instead of CLI11's "unknown subcommand".
# Usage: without_figures_test.sh CAPSNET
set -uo pipefail
capsnet=$1
source "$(dirname "$0")/test_lib.sh"

for command in reconstruct perturb attention plot; do
  expect_fail "$command is refused by name" "capsnet $command is not in this build (configured with -DCAPSNET_WITH_FIGURES=OFF" \
    "$command" --checkpoint x.pt --out y.png
done
expect_fail "eval --confusion is refused before any work" "built without figures" \
  eval --checkpoint does-not-exist.pt --confusion c.png
expect_fail "eval --worst is refused before any work" "built without figures" \
  eval --checkpoint does-not-exist.pt --worst 4 w.png
if "$capsnet" --help | grep -q 'serve.*not in this build'; then
  expect_fail "serve is refused by name" "capsnet serve is not in this build (configured with -DCAPSNET_WITH_SERVE=OFF" \
    serve --checkpoint x.pt
fi
check "help marks the left-out commands" sh -c "'$capsnet' --help | grep -q 'reconstruct.*not in this build'"

echo "without figures: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
