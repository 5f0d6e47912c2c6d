# make train: install dependencies, build (Release), fetch MNIST, train with the paper's defaults.
# make test:  install dependencies, build, fetch MNIST, run every test, then
#             the same for the minimal build (make test-minimal), then a
#             timing summary.
# make test-fast: the unit tests and a smoke run, for the edit loop.
BUILD ?= build
DATA ?= data/mnist
JOBS ?= $(shell nproc)
ARGS ?=

.PHONY: all deps build data train test test-fast test-minimal test-sanitize fuzz bench bench-as-avx2 deb docs clean

all: build

deps:
	bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(BUILD) -j $(JOBS)

data: deps
	bash scripts/fetch-mnist.sh $(DATA)

train: build data
	./$(BUILD)/capsnet train --data $(DATA) $(ARGS)

# ctest runs JOBS tests at a time (the longest first, by their COST; the
# data-parallel ones alone, PROCESSORS 2). Both runs write JUnit files;
# scripts/test-timing.py ends with each run's total, its totals per label
# (unit, e2e, slow, minimal) and its 10 slowest tests, failed or not.
test: build data
	@rm -f $(BUILD)/ctest-junit.xml $(MINIMAL_BUILD)/ctest-junit.xml; status=0; \
	  (cd $(BUILD) && ctest --output-on-failure --timeout 900 -j $(JOBS) \
	    --output-junit $(CURDIR)/$(BUILD)/ctest-junit.xml) || status=$$?; \
	  if [ $$status -eq 0 ]; then $(MAKE) test-minimal || status=$$?; fi; \
	  python3 scripts/test-timing.py full=$(BUILD) minimal=$(MINIMAL_BUILD); \
	  exit $$status

# make test-fast: the edit-build-test loop (a few minutes): every unit test in
# one process, natively, and an end-to-end smoke (train, eval, resume).
# make test runs all of it and far more.
test-fast: build data
	cd $(BUILD) && CAPSNET_TEST_MNIST=$(CURDIR)/$(DATA) ./tests/capsnet_tests --gtest_brief=1
	bash tests/smoke_test.sh ./$(BUILD)/capsnet $(DATA)

# make test-minimal: the build of a machine that has only LibTorch and a
# compiler (scripts/gpu-run.sh's, without CUDA here): the header-only
# dependencies, GoogleTest's sources and MNIST from the folder that
# scripts/pack-device-deps.sh makes, no figures, no serve, no Gloo. It builds
# the binary and the tests that only it can show (label minimal): a smoke run
# on the packed MNIST, the left-out commands' messages, the library example
# and the model registry's test (GoogleTest from the folder); the full build
# ran every other test on the same sources. check-minimal-build.sh shows that
# no header or library came from the system's packages instead of the folder.
# It is a unity build (CMake batches several sources into one compilation):
# 156 s for its three targets against about 270 s one file at a time, on the
# 2-core Xeon; the full build, one file at a time, shows that each source
# includes what it uses.
MINIMAL_BUILD ?= build-minimal
DEPS_DIR ?= .device-deps
MINIMAL_TARGETS = capsnet library_example model_registry_test
test-minimal: deps data
	bash scripts/pack-device-deps.sh $(DEPS_DIR)
	cmake -S . -B $(MINIMAL_BUILD) -DCMAKE_BUILD_TYPE=Release -DCAPSNET_DEPS_DIR=$(abspath $(DEPS_DIR)) \
	  -DCAPSNET_WITH_FIGURES=OFF -DCAPSNET_WITH_SERVE=OFF -DCAPSNET_WITH_GLOO=OFF -DCMAKE_UNITY_BUILD=ON
	cmake --build $(MINIMAL_BUILD) -j $(JOBS) --target $(MINIMAL_TARGETS)
	bash scripts/check-minimal-build.sh $(MINIMAL_BUILD)
	cd $(MINIMAL_BUILD) && ctest --output-on-failure --timeout 900 -j $(JOBS) -L minimal \
	  --output-junit $(CURDIR)/$(MINIMAL_BUILD)/ctest-junit.xml

# make test-sanitize: the whole suite (unit tests, both ISAs, and the CLI
# tests) on a build with AddressSanitizer and UndefinedBehaviorSanitizer, in
# build-sanitize/. LibTorch itself is not instrumented; tests/sanitize.supp
# names the leaks reported inside it (allocations it keeps for the process).
# python_ops is left out: an instrumented libcapsnet_ops.so cannot be loaded
# by an uninstrumented Python (the C++ tests run the same operators), and
# deb_package (cpack spent minutes compressing the instrumented binary; the
# package's contents are make test's concern).
SANITIZE_BUILD ?= build-sanitize
SANITIZE_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
test-sanitize: deps data
	cmake -S . -B $(SANITIZE_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS="$(SANITIZE_FLAGS)" -DCMAKE_EXE_LINKER_FLAGS="$(SANITIZE_FLAGS)"
	cmake --build $(SANITIZE_BUILD) -j $(JOBS)
	cd $(SANITIZE_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitize.supp UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure --timeout 1800 -j $(JOBS) -E '^python_ops$$'

# make fuzz: libFuzzer targets (clang-16) for the IDX reader, image loading
# and preprocessing, metrics.jsonl parsing and plotting, the options JSON and
# the command line (parsing only);
# each runs FUZZ_SECONDS from a seed corpus of real files (docs/testing.md, "Sanitizers and fuzzing").
FUZZ_SECONDS ?= 60
fuzz: deps data
	bash fuzz/run.sh $(FUZZ_SECONDS)

# capsnet bench and the seed's model in PyTorch (Debian's python3-torch), same batch, ratios.
# bench-as-avx2: the same on this machine limited as an AVX2-only CPU without bf16
# (oneDNN, ATen, capsnet's kernels and OpenBLAS), for both programs.
BENCH_ARGS ?= --batch-size 128 --steps 5 --warmup 3
AVX2_ENV = ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 CAPSNET_NO_BF16=1 OPENBLAS_CORETYPE=Haswell
bench-as-avx2:
	$(MAKE) bench BENCH_ENV="$(AVX2_ENV)"
bench: build
	@command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c 'import torch' 2>/dev/null || \
	  { echo "make bench: needs Debian's python3-torch (apt-get install python3-torch)" >&2; exit 1; }
	env $(BENCH_ENV) ./$(BUILD)/capsnet bench $(BENCH_ARGS) --json > $(BUILD)/bench-capsnet.json
	env $(BENCH_ENV) ./$(BUILD)/capsnet bench $(BENCH_ARGS) --precision bf16 --json > $(BUILD)/bench-capsnet-bf16.json
	env $(BENCH_ENV) /usr/bin/python3 bench/pytorch_reference.py $(BENCH_ARGS) --json > $(BUILD)/bench-pytorch.json
	env $(BENCH_ENV) MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864 \
	  /usr/bin/python3 bench/pytorch_reference.py $(BENCH_ARGS) --json > $(BUILD)/bench-pytorch-malloc.json
	python3 bench/compare.py $(BUILD)/bench-capsnet.json $(BUILD)/bench-pytorch.json \
	  $(BUILD)/bench-pytorch-malloc.json $(BUILD)/bench-capsnet-bf16.json

# make deb: build/capsnet_<version>_amd64.deb (CPack): the binary, the library,
# the headers, the CMake package files and the web page, under /usr; install
# it with apt install ./build/capsnet_*.deb (docs/install.md).
deb: build
	cd $(BUILD) && cpack -G DEB

# make docs: the API reference of include/capsnet (Doxygen, docs/Doxyfile) in
# build/docs/html; fails while Doxygen warns (build/docs/warnings.log), e.g.
# about a public class or function without its one-line summary.
docs:
	@command -v doxygen >/dev/null || { echo "make docs: needs Doxygen (apt-get install doxygen)" >&2; exit 1; }
	rm -rf build/docs && mkdir -p build/docs && doxygen docs/Doxyfile
	@n=$$(grep -c 'warning:' build/docs/warnings.log || true); \
	  if [ "$$n" -gt 0 ]; then echo "make docs: $$n warnings (build/docs/warnings.log)" >&2; exit 1; fi; \
	  echo "make docs: build/docs/html/index.html, no warnings"

clean:
	rm -rf $(BUILD)
