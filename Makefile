# make train: install dependencies, build (Release), fetch MNIST, train with the paper's defaults.
# make test:  install dependencies, build, fetch MNIST, run every test.
BUILD ?= build
DATA ?= data/mnist
JOBS ?= $(shell nproc)
ARGS ?=

.PHONY: all deps build data train test bench clean

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

test: build data
	cd $(BUILD) && ctest --output-on-failure --timeout 900

# capsnet bench and the seed's model in PyTorch (Debian's python3-torch), same batch, ratios.
BENCH_ARGS ?= --batch-size 128 --steps 5 --warmup 3
bench: build
	@command -v /usr/bin/python3 >/dev/null && /usr/bin/python3 -c 'import torch' 2>/dev/null || \
	  { echo "make bench: needs Debian's python3-torch (apt-get install python3-torch)" >&2; exit 1; }
	./$(BUILD)/capsnet bench $(BENCH_ARGS) --json > $(BUILD)/bench-capsnet.json
	./$(BUILD)/capsnet bench $(BENCH_ARGS) --precision bf16 --json > $(BUILD)/bench-capsnet-bf16.json
	/usr/bin/python3 bench/pytorch_reference.py $(BENCH_ARGS) --json > $(BUILD)/bench-pytorch.json
	MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864 \
	  /usr/bin/python3 bench/pytorch_reference.py $(BENCH_ARGS) --json > $(BUILD)/bench-pytorch-malloc.json
	python3 bench/compare.py $(BUILD)/bench-capsnet.json $(BUILD)/bench-pytorch.json \
	  $(BUILD)/bench-pytorch-malloc.json $(BUILD)/bench-capsnet-bf16.json

clean:
	rm -rf $(BUILD)
