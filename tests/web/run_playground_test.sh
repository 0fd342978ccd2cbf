#!/usr/bin/env bash
# Runs playground.test.mjs: the playground page in Debian's headless Chromium, driven by playwright-core
# (the exact version pinned in package-lock.json, installed with `npm ci` into WORK_DIR, never into the
# source tree), against the real llmserve binary. Leaves WORK_DIR/playground.png as an artifact.
# Exits 77 (ctest: skipped) when node, npm or /usr/bin/chromium is missing.
set -euo pipefail
binary=${1:?usage: run_playground_test.sh LLMSERVE_BINARY WORK_DIR}
work=${2:?usage: run_playground_test.sh LLMSERVE_BINARY WORK_DIR}
here=$(cd "$(dirname "$0")" && pwd)

if ! command -v node >/dev/null || ! command -v npm >/dev/null || [[ ! -x /usr/bin/chromium ]]; then
  echo "SKIPPED: node, npm and /usr/bin/chromium are needed for the playground test (Debian: apt-get install nodejs npm chromium)"
  exit 77
fi
mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/../common/llmserve_process.mjs" "$here/playground.test.mjs" \
  "$work/"
stamp="$work/node_modules/.installed-lock.json"
if ! cmp -s "$here/package-lock.json" "$stamp"; then
  (cd "$work" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$here/package-lock.json" "$stamp"
fi
cd "$work"
LLMSERVE_BINARY="$binary" LLMSERVE_MODEL_DIR="$here/../../models/gpt2-brown-mini" PLAYGROUND_ARTIFACTS="$work" \
  PLAYGROUND_CHAT_TEMPLATE="$here/chat_template.jinja" \
  node --test --test-concurrency=1 --test-reporter=spec playground.test.mjs
