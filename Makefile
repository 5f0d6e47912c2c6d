# make train: install dependencies, build (Release), fetch MNIST, train with the paper's defaults.
# make test:  install dependencies, build, fetch MNIST, run every test.
BUILD ?= build
DATA ?= data/mnist
JOBS ?= $(shell nproc)
ARGS ?=

.PHONY: all deps build data train test clean

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

clean:
	rm -rf $(BUILD)
