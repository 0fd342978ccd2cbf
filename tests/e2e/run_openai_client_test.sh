#!/usr/bin/env bash
# Runs openai_client.test.mjs: the official `openai` npm client (the exact version pinned in
# package-lock.json, installed with `npm ci` into WORK_DIR, never into the source tree) against
# the real llmserve binary. Exits 77 (ctest: skipped) only when node or npm is missing.
set -euo pipefail
usage="usage: run_openai_client_test.sh LLMSERVE_BINARY WORK_DIR MAKE_CHAT_FIXTURE"
binary=${1:?$usage}
work=${2:?$usage}
make_chat_fixture=${3:?$usage}
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIPPED: node and npm are needed for the openai client test (Debian: apt-get install nodejs npm)"
  exit 77
fi
mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/openai_client.test.mjs" \
  "$here/../common/llmserve_process.mjs" "$work/"
stamp="$work/node_modules/.installed-lock.json"
if ! cmp -s "$here/package-lock.json" "$stamp"; then
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$here/package-lock.json" "$stamp"
fi
rm -rf "$work/chat-model"
"$make_chat_fixture" "$work/chat-model"
cd "$work"
LLMSERVE_BINARY="$binary" LLMSERVE_MODEL_DIR="$here/../../models/gpt2-brown-mini" \
  LLMSERVE_CHAT_MODEL_DIR="$work/chat-model" \
  node --test --test-reporter=spec openai_client.test.mjs
