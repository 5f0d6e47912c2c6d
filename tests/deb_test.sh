#!/usr/bin/env bash
# make deb's package: cpack builds capsnet_<version>_<arch>.deb with derived
# Depends; unpacked into a scratch root (dpkg-deb -x), its capsnet answers
# --version and --help and trains a step.
# Usage: deb_test.sh BUILD_DIR MNIST_DIR
set -uo pipefail
build=$1
mnist=$2
capsnet=$build/capsnet
source "$(dirname "$0")/test_lib.sh"

version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
(cd "$build" && cpack -G DEB -B "$work/package") >"$work/cpack.log" 2>&1
check "cpack builds the package" test $? -eq 0 || tail -20 "$work/cpack.log" >&2
deb=$(ls "$work/package"/capsnet_"$version"_*.deb 2>/dev/null | head -1)
check "named capsnet_${version}_ARCH.deb" test -n "$deb"
check "its Depends are derived (LibTorch's package among them)" sh -c "dpkg-deb -f '$deb' Depends | grep -q libtorch"
dpkg-deb -c "$deb" >"$work/contents"
for path in ./usr/bin/capsnet ./usr/lib/libcapsnet.a ./usr/include/capsnet/capsnet.h \
  ./usr/include/capsnet/version.h ./usr/lib/cmake/capsnet/capsnetConfig.cmake \
  ./usr/lib/cmake/capsnet/capsnetConfigVersion.cmake ./usr/share/capsnet/web/index.html \
  ./usr/share/capsnet/models/efficient-capsnet-mnist.pt; do
  check "the package holds $path" grep -q " $path\$" "$work/contents"
done
dpkg-deb -x "$deb" "$work/root"
installed=$work/root/usr/bin/capsnet
check "the unpacked capsnet names its version" sh -c "'$installed' --version | grep -q '^capsnet $version '"
check "the unpacked capsnet prints its help" sh -c "'$installed' --help | grep -q 'train'"
"$installed" train --data "$mnist" --limit 16 --test-limit 16 --batch-size 16 --epochs 1 --threads 1 \
  --out "$work/run" >"$work/train.log" 2>&1
check "the unpacked capsnet trains a step" grep -q "^epoch 1/1: train loss" "$work/train.log" || tail -5 "$work/train.log" >&2

echo "deb: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
