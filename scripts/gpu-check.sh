#!/usr/bin/env bash
# The GPU check of the CUDA backend: build it, run its GPU tests (op parity with the CPU backend,
# the GPT-2 and Llama-family fixtures' parity with transformers, batched == unbatched, graphs ==
# eager) and measure the engine on the gpt2, gpt2-medium, gpt2-large, qwen2.5-0.5b and llama-3.2-1b
# shapes, then print a summary. Everything a session with a GPU needs, in one call, so that GPU
# time is spent only on running it.
#
#   scripts/gpu-check.sh                     GPU machine with the build dependencies: configure,
#                                            build and run (in $BUILD, default build-gpu).
#   scripts/gpu-check.sh --bundle [DIR]      Any machine with nvcc and the build dependencies, no GPU
#                                            needed: build the binaries and the non-system shared
#                                            libraries they load into DIR (default build-gpu-bundle).
#   scripts/gpu-check.sh --prebuilt [DIR]    GPU machine without the build dependencies (the lent
#                                            device machines have nvcc and CMake but no libfmt,
#                                            gtest, ...): run DIR's binaries against this checkout.
#
# A session with a lent GPU: `scripts/gpu-check.sh --bundle` here, then on the device
# `scripts/gpu-check.sh --prebuilt` with build-gpu-bundle carried (a few MiB).
#
# Environment: CUDA_ARCHS (CMAKE_CUDA_ARCHITECTURES; default "native" when building on a GPU
# machine, "90" for a bundle: H100/H200), SHAPES (default
# gpt2,gpt2-medium,gpt2-large,qwen2.5-0.5b,llama-3.2-1b), JOBS, BUILD, BENCH_SECONDS (each
# llmserve bench run's time limit, default 120). Logs go to $OUT when it is set (the device tool
# brings them back), else to $BUILD/logs.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

MODE=build
BUNDLE=build-gpu-bundle
case "${1:-}" in
    --bundle) MODE=bundle; BUNDLE=${2:-$BUNDLE} ;;
    --prebuilt) MODE=prebuilt; BUNDLE=${2:-$BUNDLE} ;;
    "") ;;
    *) echo "usage: $0 [--bundle [DIR] | --prebuilt [DIR]]" >&2; exit 2 ;;
esac
BUILD=${BUILD:-build-gpu}
JOBS=${JOBS:-$(nproc)}
SHAPES=${SHAPES:-gpt2,gpt2-medium,gpt2-large,qwen2.5-0.5b,llama-3.2-1b}

die() { echo "gpu-check: $*" >&2; exit 1; }

# Configures and builds the GPU targets in $BUILD; llmserve is optional (other modules may be
# mid-edit), the test and bench binaries are not.
build() {
    local archs=$1
    local log="$BUILD/configure.log"  # inside the (ignored) build folder, not the checkout
    mkdir -p "$BUILD" || die "cannot create $BUILD"
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMSERVE_CUDA=ON \
        -DLLMSERVE_BENCH=OFF -DCMAKE_CUDA_ARCHITECTURES="$archs" >"$log" 2>&1 \
        || { tail -30 "$log"; die "configure failed (log: $log)"; }
    grep -q "CUDA backend: on" "$log" \
        || die "the CUDA backend is not enabled in this tree (is cmake/Cuda.cmake included from" \
            "CMakeLists.txt?); see $log"
    cmake --build "$BUILD" -j "$JOBS" --target cuda_test device_test \
        || die "building the CUDA tests failed"
    cmake --build "$BUILD" -j "$JOBS" --target llmserve llmserve_cuda_module \
        || echo "gpu-check: llmserve did not build; its bench is skipped" >&2
}

if [ "$MODE" = bundle ]; then
    build "${CUDA_ARCHS:-90}"
    STAGE=$(mktemp -d)
    mkdir -p "$STAGE/bin" "$STAGE/lib"
    # libllmserve_cuda.so goes beside llmserve, where the binary looks for its CUDA module.
    for binary in "$BUILD"/tests/backend_cuda/cuda_test "$BUILD"/tests/backend_cuda/device_test \
        "$BUILD"/llmserve "$BUILD"/libllmserve_cuda.so; do
        [ -x "$binary" ] && strip -o "$STAGE/bin/$(basename "$binary")" "$binary"
    done
    # Shared libraries the device machine may lack: everything but glibc's own libraries (they
    # must match the device's libc), libstdc++/libgcc (the device's are newer) and CUDA's (the
    # device has its toolkit, matched to its driver).
    for binary in "$STAGE"/bin/*; do
        ldd "$binary" | awk '/=> \// {print $3}'
    done | sort -u | while read -r lib; do
        case "$(basename "$lib")" in
            libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|libresolv.so*|libnsl.so*|\
            libutil.so*|libanl.so*|libnss_*|ld-linux*|libgcc_s.so*|libstdc++.so*|libcuda*.so*|\
            libcublas*.so*) ;;
            *) cp -L "$lib" "$STAGE/lib/" ;;
        esac
    done
    # Compressed: the working tree and what a device call carries share a 64 MiB limit.
    rm -rf "$BUNDLE" && mkdir -p "$BUNDLE"
    tar -czf "$BUNDLE/bundle.tar.gz" -C "$STAGE" bin lib
    rm -rf "$STAGE"
    echo "built from $(git rev-parse HEAD 2>/dev/null) plus the working tree, $(date -u +%FT%TZ)," \
        "CUDA architectures ${CUDA_ARCHS:-90}" >"$BUNDLE/BUILD_INFO"
    du -sh "$BUNDLE"
    echo "gpu-check: bundle ready; on the GPU machine run: scripts/gpu-check.sh --prebuilt $BUNDLE"
    exit 0
fi

if [ "$MODE" = prebuilt ]; then
    [ -f "$BUNDLE/bundle.tar.gz" ] \
        || die "no $BUNDLE/bundle.tar.gz: build it first with scripts/gpu-check.sh --bundle"
    cat "$BUNDLE/BUILD_INFO"
    UNPACKED=$(mktemp -d)
    tar -xzf "$BUNDLE/bundle.tar.gz" -C "$UNPACKED" || die "cannot unpack $BUNDLE/bundle.tar.gz"
    BIN=$UNPACKED/bin
    export LD_LIBRARY_PATH="$UNPACKED/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
    CUDA_TEST=$BIN/cuda_test DEVICE_TEST=$BIN/device_test
    LLMSERVE=$BIN/llmserve
    export LLMSERVE_CUDA_MODULE=$BIN/libllmserve_cuda.so  # device_test was built to look in the build tree
else
    build "${CUDA_ARCHS:-native}"
    CUDA_TEST=$BUILD/tests/backend_cuda/cuda_test DEVICE_TEST=$BUILD/tests/backend_cuda/device_test
    LLMSERVE=$BUILD/llmserve
fi

LOGS=${OUT:-$BUILD/logs}
mkdir -p "$LOGS"
# Binaries built elsewhere find the fixtures and the embedded model through these.
export LLMSERVE_SOURCE_DIR=$ROOT LLMSERVE_FIXTURES=${LLMSERVE_FIXTURES:-$ROOT/tests/fixtures}
SUMMARY=()

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
    | tee "$LOGS/gpu.txt" || echo "(nvidia-smi failed)"

echo "== device selection"
"$DEVICE_TEST" 2>&1 | tee "$LOGS/device_test.log" | grep -E "DEVICE=|PASSED|FAILED"
DEVICE_RC=${PIPESTATUS[0]}
SUMMARY+=("device_test: $([ "$DEVICE_RC" = 0 ] && echo passed || echo FAILED) ($(grep -m1 -o 'DEVICE=auto: .*' "$LOGS/device_test.log"))")

echo "== CUDA tests"
"$CUDA_TEST" --gtest_color=no 2>&1 | tee "$LOGS/cuda_test.log" \
    | grep -E "^\[ +(OK|FAILED|SKIPPED) +\].*\(|worst logit error|graphs captured|Failure" \
    | head -80
TEST_RC=${PIPESTATUS[0]}
PASSED=$(grep -cE "^\[ +OK +\] .*\(" "$LOGS/cuda_test.log")
FAILED=$(grep -cE "^\[ +FAILED +\] .*\(" "$LOGS/cuda_test.log")
SKIPPED=$(grep -cE "^\[ +SKIPPED +\] .*\(" "$LOGS/cuda_test.log")
VERDICT=passed
[ "$TEST_RC" = 0 ] || VERDICT=FAILED
# On a GPU machine a skip means the tests never saw the GPU: the check did not happen.
[ "$SKIPPED" = 0 ] || VERDICT="FAILED (tests skipped: no CUDA device seen)"
SUMMARY+=("cuda_test: $VERDICT: $PASSED passed, $FAILED failed, $SKIPPED skipped")
while read -r line; do SUMMARY+=("  $line"); done \
    < <(grep -E "worst logit error|graphs captured" "$LOGS/cuda_test.log")

echo "== llmserve bench on the GPU"
# Per shape: prefill, batch-1 and 8/32/128-sequence decode, time to first token, load, and the seed
# stack's wall-time method (prompt 128, 128 new, batches 1 and 32). Then gpt2 once more without
# CUDA graphs, for what they are worth.
bench() {  # name, then llmserve bench arguments
    local name=$1
    shift
    timeout "${BENCH_SECONDS:-120}" "$LLMSERVE" bench --device cuda --weights-dtype f16 \
        --json "$LOGS/bench.$name.json" "$@" >"$LOGS/bench.$name.log" 2>&1 \
        || SUMMARY+=("llmserve bench $name: FAILED (see bench.$name.log)")
    cat "$LOGS/bench.$name.log"
    while read -r line; do SUMMARY+=("  $name: $line"); done \
        < <(grep -E "^(prefill|decode|generate|time to first)" "$LOGS/bench.$name.log")
}
if [ ! -x "$LLMSERVE" ]; then
    SUMMARY+=("llmserve bench: not run (llmserve was not built)")
else
    for shape in ${SHAPES//,/ }; do
        bench "$shape" --shape "$shape" --concurrency 8 32 128 --generate-batches 1 32
    done
    bench gpt2-no-graphs --shape gpt2 --cuda-graphs off --concurrency 32 --prompt-lengths 128 \
        --generate-batches 1 32
fi

echo
echo "== gpu-check summary ($(head -1 "$LOGS/gpu.txt" 2>/dev/null), ${SECONDS}s)"
printf '%s\n' "${SUMMARY[@]}"
echo "seed stack baseline (H100, transformers eager f16, prompt 128, 128 new): gpt2 144 tokens/s at" \
    "batch 1, 3,476 at batch 32; gpt2-large 56 at batch 1"
[ "$VERDICT" = passed ] && [ "$DEVICE_RC" = 0 ]
