# Helpers of the end-to-end tests, sourced by cli_test.sh and figures_test.sh.
# Expects $capsnet (the binary); sets up $work (removed on exit) and counts
# $passed / $failed.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0
failed=0

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
  "$capsnet" "$@" >"$work/out" 2>"$work/err" || status=$?
  if [ "$status" -ne 0 ] && grep -q -- "$pattern" "$work/err"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $name (exit $status; wanted '$pattern' on stderr)" >&2
    cat "$work/err" >&2
  fi
}

json_get() { # json_get FILE PYTHON-EXPRESSION-ON-j
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}
