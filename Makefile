# The front door. `make run` / `make serve` and `make test` set everything up from a fresh Debian 12 machine.
BUILD       ?= build
BUILD_ASAN  ?= build-sanitize
JOBS        ?= $(shell nproc)
FUZZ_SECONDS ?= 20
PROMPT      ?= The jury said
CMAKE_FLAGS ?=

.PHONY: all deps build build-release-checks build-asan test test-unit test-release test-asan fuzz run serve bench image image-test format clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

# The sanitizer build: clang with ASan+UBSan, every test but the `release` ones, and the libFuzzer targets
# over the same objects (tests/CMakeLists.txt says which tests run where).
$(BUILD_ASAN)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(BUILD_ASAN) -G Ninja -DCMAKE_BUILD_TYPE=Debug \
	  -DLLMSERVE_SANITIZE=ON -DLLMSERVE_FUZZ=ON -DLLMSERVE_BENCH=OFF $(CMAKE_FLAGS)

build-asan: deps $(BUILD_ASAN)/build.ninja
	cmake --build $(BUILD_ASAN) -j $(JOBS)

# Just what the release-only tests need, and the benchmarks.
build-release-checks: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS) --target release-checks

# Every test: in the sanitizer build all but the `release` ones, then those in the release build, then each
# fuzzer for FUZZ_SECONDS. (`make test-unit` runs every test in the release build.)
test: test-asan test-release fuzz
	@echo "make test: all suites passed"

test-unit: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-release: build-release-checks
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS) -L release

test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(BUILD_ASAN) --output-on-failure -j $(JOBS) -LE release

fuzz: build-asan
	@bash scripts/run-fuzzers.sh $(BUILD_ASAN) $(FUZZ_SECONDS)

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
	rm -rf $(BUILD) $(BUILD_ASAN)
