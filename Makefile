# The two commands of the README: `make demo` and `make test`. Each installs what is
# missing (Debian packages), configures, builds and runs.
BUILD ?= build
JOBS ?= $(shell nproc)
NP ?= 2
MPIRUN_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-run-as-root,) --oversubscribe
RECIPE ?= examples/recipes/fashion_mlp.yaml

.PHONY: all deps configure build demo test bench clean

all: build

deps:
	@scripts/install_deps.sh

$(BUILD)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD)/build.ninja

build: configure
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	mpirun $(MPIRUN_FLAGS) -np $(NP) $(BUILD)/petaring train $(RECIPE)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

clean:
	rm -rf $(BUILD)
