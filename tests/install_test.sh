#!/usr/bin/env bash
# The library installs: `cmake --install` into a scratch prefix, then a
# program of its own (tests/install_example) configured with
# find_package(capsnet) against that prefix alone, built and run (it trains
# a few steps and predicts); the installed files name no path of the source
# or build tree, and the installed binary runs.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -uo pipefail
build=$1
source_dir=$2
capsnet=$build/capsnet # for test_lib.sh's helpers
source "$(dirname "$0")/test_lib.sh"

prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" >"$work/install.log" 2>&1
check "cmake --install succeeds" test $? -eq 0 || tail -20 "$work/install.log" >&2
check "the library is installed" test -f "$prefix/lib/libcapsnet.a"
check "the binary is installed" test -x "$prefix/bin/capsnet"
check "the headers are installed" test -f "$prefix/include/capsnet/capsnet.h" -a -f "$prefix/include/capsnet/version.h"
check "capsnetConfig.cmake and its version file" test -f "$prefix/lib/cmake/capsnet/capsnetConfig.cmake" -a \
  -f "$prefix/lib/cmake/capsnet/capsnetConfigVersion.cmake"
# In an instrumented build (make test-sanitize) GCC 12 writes the sanitizers'
# source locations (ASan's globals, UBSan's checks) as absolute paths, which
# -ffile-prefix-map does not remap; there the compiled files (libcapsnet.a,
# the binary) are left out of this check, which make test's build makes whole.
compiled=()
grep -q '^CMAKE_CXX_FLAGS:STRING=.*-fsanitize' "$build/CMakeCache.txt" &&
  compiled=(--exclude=libcapsnet.a --exclude=capsnet)
leaks=$(grep -rlF "${compiled[@]}" -e "$(realpath "$source_dir")" -e "$(realpath "$build")" "$prefix" 2>/dev/null)
check "no installed file names the source or build tree" test -z "$leaks" || echo "  $leaks" >&2
check "the installed binary runs" sh -c "'$prefix/bin/capsnet' --version | grep -q '^capsnet '"
check "the shipped model is installed" test -s "$prefix/share/capsnet/models/efficient-capsnet-mnist.pt"
python3 -c "import sys; d=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write(b'P5 28 28 255\n'+d[16:16+784])" \
  "$CAPSNET_TEST_MNIST/t10k-images-idx3-ubyte" "$work/seven.pgm"
"$prefix/bin/capsnet" predict --json "$work/seven.pgm" >"$work/predict.json" 2>"$work/predict.err"
check "the installed binary predicts with it when no --checkpoint is given" \
  grep -q "using the shipped model $prefix/share/capsnet/models/efficient-capsnet-mnist.pt" "$work/predict.err" || cat "$work/predict.err" >&2
check "and reads a test 7 as 7" test "$(json_get "$work/predict.json" 'j[0]["prediction"]')" = 7

# The example is compiled as the library was (make test-sanitize's build
# instruments both: an uninstrumented program cannot link an instrumented
# library).
cxx_flags=$(sed -n 's/^CMAKE_CXX_FLAGS:STRING=//p' "$build/CMakeCache.txt")
link_flags=$(sed -n 's/^CMAKE_EXE_LINKER_FLAGS:STRING=//p' "$build/CMakeCache.txt")
cmake -S "$(dirname "$0")/install_example" -B "$work/example" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CXX_FLAGS="$cxx_flags" -DCMAKE_EXE_LINKER_FLAGS="$link_flags" \
  -DCMAKE_PREFIX_PATH="$prefix" -DEXAMPLE_SOURCE="$(realpath "$(dirname "$0")/library_example.cpp")" \
  >"$work/configure.log" 2>&1
check "find_package(capsnet) finds the installed package" test $? -eq 0 || tail -20 "$work/configure.log" >&2
check "from the prefix, not the build tree" grep -q "capsnet_DIR:PATH=$prefix/lib/cmake/capsnet" "$work/example/CMakeCache.txt"
cmake --build "$work/example" -j 2 >"$work/build.log" 2>&1
check "the example builds against capsnet::capsnet" test $? -eq 0 || tail -20 "$work/build.log" >&2
(cd "$work" && "$work/example/library_example") >"$work/run.log" 2>&1
check "the example trains and predicts" grep -q "library example: all checks passed" "$work/run.log" || tail -20 "$work/run.log" >&2

echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
