#!/usr/bin/env bash
# Runs validate_outputs.mjs with the ajv pinned in tests/grammar/npm (installed by `make deps`).
# Exits 77 (ctest: skipped) only when node is missing.
set -euo pipefail
outputs=${1:?usage: run_ajv_validation.sh OUTPUTS_JSONL}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null; then
  echo "SKIPPED: node is needed for the ajv validation (Debian: apt-get install nodejs)"
  exit 77
fi
if [[ ! -d "$here/npm/node_modules/ajv" ]]; then
  echo "tests/grammar/npm/node_modules/ajv is missing: run make deps" >&2
  exit 1
fi
cd "$here/npm"
node validate_outputs.mjs "$outputs"
