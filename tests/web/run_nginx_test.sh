#!/usr/bin/env bash
# Runs nginx_scaleout.test.mjs: deploy/nginx/llmserve.conf in front of two llmserve replicas, nginx
# started by the test (config, pid, logs and temp files in a temporary folder; no root needed beyond
# what the machine's nginx build requires). Exits 77 (ctest: skipped) when node or nginx is missing.
set -euo pipefail
binary=${1:?usage: run_nginx_test.sh LLMSERVE_BINARY WORK_DIR}
work=${2:?usage: run_nginx_test.sh LLMSERVE_BINARY WORK_DIR}
here=$(cd "$(dirname "$0")" && pwd)
export PATH="$PATH:/usr/sbin:/sbin"

if ! command -v node >/dev/null || ! command -v nginx >/dev/null; then
  echo "SKIPPED: node and nginx are needed for the scale-out test (Debian: apt-get install nodejs nginx)"
  exit 77
fi
mkdir -p "$work"
cp "$here/nginx_scaleout.test.mjs" "$here/../common/llmserve_process.mjs" "$work/"
cd "$work"
LLMSERVE_BINARY="$binary" LLMSERVE_MODEL_DIR="$here/../../models/gpt2-brown-mini" \
  NGINX_CONFIG="$here/../../deploy/nginx/llmserve.conf" \
  node --test --test-concurrency=1 --test-reporter=spec nginx_scaleout.test.mjs
