# The front door. `make run` / `make serve` and `make test` set everything up from a fresh Debian 12 machine.
BUILD       ?= build
BUILD_ASAN  ?= build-asan
BUILD_FUZZ  ?= build-fuzz
JOBS        ?= $(shell nproc)
FUZZ_SECONDS ?= 20
PROMPT      ?= The jury said
CMAKE_FLAGS ?=

.PHONY: all deps build build-asan build-fuzz test test-unit test-asan fuzz run serve bench image image-test format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD_ASAN)/build.ninja:
	cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLLMSERVE_SANITIZE=ON -DLLMSERVE_BENCH=OFF

build-asan: deps $(BUILD_ASAN)/build.ninja
	cmake --build $(BUILD_ASAN) -j $(JOBS)

$(BUILD_FUZZ)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(BUILD_FUZZ) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLLMSERVE_FUZZ=ON

build-fuzz: deps $(BUILD_FUZZ)/build.ninja
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzzers

# Every test: unit, parity and end-to-end tests; the same tests under ASan+UBSan; each fuzzer for FUZZ_SECONDS.
test: test-unit test-asan fuzz
	@echo "make test: all suites passed"

test-unit: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS) -LE slow

fuzz: build-fuzz
	@bash scripts/run-fuzzers.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

run: build
	$(BUILD)/llmserve generate "$(PROMPT)" --max-new-tokens 60

# The main job: the HTTP server on the embedded model (MODEL_NAME, PORT, ... override; see README).
serve: build
	$(BUILD)/llmserve serve

bench: build
	$(BUILD)/llmserve bench --shape gpt2

# The container image (Containerfile) with podman or docker; image-test checks it without running a container.
image:
	@bash scripts/build-image.sh

image-test: image
	@bash scripts/image-test.sh

format:
	clang-format -i $$(git ls-files '*.cpp' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
