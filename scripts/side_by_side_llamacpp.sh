#!/usr/bin/env bash
# llama.cpp and llmserve timed in turn on the same GGUF files, two rounds (run on a quiet machine):
# llama-bench -p 512 -n 128 -r 3 -t 2 against llmserve bench's 512-token prefill and 128-token
# batch-1 decode. docs/PERFORMANCE.md ("GGUF files") has the figures and how the files were made
# (scripts/qwen_shape_gguf.py, then llama-quantize).
# Usage: scripts/side_by_side_llamacpp.sh LLMSERVE LLAMA_BENCH FILE.gguf... > LOG
set -u
if [ $# -lt 3 ]; then
  echo "usage: $0 LLMSERVE_BINARY LLAMA_BENCH_BINARY FILE.gguf..." >&2
  exit 2
fi
LLMSERVE=$1
BENCH=$2
shift 2
for f in "$LLMSERVE" "$BENCH"; do [ -x "$f" ] || { echo "missing executable: $f" >&2; exit 1; }; done
for f in "$@"; do [ -f "$f" ] || { echo "missing model: $f" >&2; exit 1; }; done

stamp() { echo "=== $1"; date -u; cat /proc/loadavg; }

echo "llmserve: $LLMSERVE"
nproc
for round in 1 2; do
  for f in "$@"; do
    stamp "round $round llama.cpp $(basename "$f")"
    "$BENCH" -m "$f" -p 512 -n 128 -r 3 -t 2
    echo "rc=$?"
    stamp "round $round llmserve $(basename "$f")"
    "$LLMSERVE" bench --device cpu --model "$f" --threads 2 --prompt-lengths 512 \
      --decode-tokens 128 --concurrency 4 --repeats 3 \
      --load-rounds 1 --load-prompt 16 --load-new-tokens 2
    echo "rc=$?"
  done
done
stamp "done"
