#!/usr/bin/env bash
# Shows that a build configured with CAPSNET_DEPS_DIR (make test-minimal) took
# its headers from that folder and linked none of the left-out libraries: the
# compiler's dependency files name no header of the system's CLI11,
# nlohmann-json, stb, zlib, GoogleTest, cairo, cpp-httplib or gloo, and the
# capsnet binary needs no cairo, httplib or stb library.
# Usage: check-minimal-build.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: check-minimal-build.sh BUILD_DIR}
forbidden='/usr/include/(CLI|nlohmann|stb|gtest|cairo|gloo)/|/usr/include/(zlib|zconf|httplib)\.h|/usr/src/googletest'
depfiles=$(find "$build" \( -name '*.o.d' -o -name compiler_depend.make -o -name depend.make \) -type f)
count=$(echo "$depfiles" | grep -c . || true)
if [ "$count" -eq 0 ]; then
  echo "check-minimal-build: no dependency files in $build; build it first" >&2
  exit 1
fi
headers=$(echo "$depfiles" | xargs grep -hoE '/[^ :\\]+\.(h|hpp)' | sort -u)
used=$(echo "$headers" | grep -cE "^$(realpath "$build/..")/.*/include/(CLI|nlohmann|stb)/|zlib\.h" || true)
bad=$(echo "$headers" | grep -E "$forbidden" || true)
if [ -n "$bad" ]; then
  echo "check-minimal-build: $build compiled headers of the system's packages, not the packed folder's:" >&2
  echo "$bad" | head -20 >&2
  exit 1
fi
if [ "$used" -eq 0 ]; then
  echo "check-minimal-build: no header of the packed folder was compiled: is $build configured with CAPSNET_DEPS_DIR?" >&2
  exit 1
fi
needed=$(readelf -d "$build/capsnet" | grep NEEDED || true)
if echo "$needed" | grep -qE 'cairo|httplib|stb'; then
  echo "check-minimal-build: $build/capsnet links a left-out library:" >&2
  echo "$needed" >&2
  exit 1
fi
echo "check-minimal-build: $count dependency files, $used packed headers used, none of the system's; capsnet links no cairo, httplib or stb"
