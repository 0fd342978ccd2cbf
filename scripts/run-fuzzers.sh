#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, two at a time, seeded from fuzz/corpus/<name> when
# present. Fails if any target finds a crash.
set -euo pipefail
build_dir=${1:?build dir}
seconds=${2:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
mapfile -t targets < <(find "$build_dir" -maxdepth 3 -type f -executable -name 'fuzz_*' | sort)
if [[ ${#targets[@]} -eq 0 ]]; then echo "fuzz: no targets in $build_dir" >&2; exit 1; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_one() {
  local target=$1 name corpus
  name=$(basename "$target"); name=${name#fuzz_}
  corpus="$work/$name"; mkdir -p "$corpus"
  [[ -d "$root/fuzz/corpus/$name" ]] && cp -r "$root/fuzz/corpus/$name/." "$corpus/"
  if "$target" -max_total_time="$seconds" -rss_limit_mb=4096 -artifact_prefix="$work/$name-" "$corpus" \
      >"$work/$name.log" 2>&1; then
    echo "fuzz: $name: $(grep -Eo 'Done [0-9]+ runs' "$work/$name.log" | tail -1 || echo done) in ${seconds}s, no crash"
  else
    echo "fuzz: $name FAILED"; tail -40 "$work/$name.log"; return 1
  fi
}
status=0
pids=()
for target in "${targets[@]}"; do
  run_one "$target" & pids+=($!)
  if [[ ${#pids[@]} -ge 2 ]]; then wait "${pids[0]}" || status=1; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
