#!/usr/bin/env bash
# Checks the built image without running a container (this sandbox cannot): mounts it and, through chroot as the
# image's non-root user, runs `llmserve --version` and a greedy `generate` on the embedded model; checks that every
# shared library resolves and that the health check, port and user are declared. Usage: scripts/image-test.sh
# [IMAGE] after `make image`. Needs root and podman.
set -euo pipefail
image=${1:-${IMAGE:-llmserve:latest}}
fail() { echo "image-test: FAIL: $*" >&2; exit 1; }

mnt=$(podman image mount "$image") || fail "cannot mount $image (built? run make image)"
trap 'podman image unmount "$image" >/dev/null' EXIT

missing=$(chroot "$mnt" ldd /usr/bin/llmserve | grep 'not found' || true)
[[ -z "$missing" ]] || fail "libraries missing from the image: $missing"

run_as_user() { chroot --userspec=10001:10001 "$mnt" env HOME=/var/lib/llmserve "$@"; }
version=$(run_as_user /usr/bin/llmserve --version) || fail "llmserve --version failed"
echo "image-test: $version"
text=$(cd / && run_as_user /usr/bin/llmserve generate "The jury said" --max-new-tokens 8 --temperature 0) ||
  fail "generate on the embedded model failed"
[[ -n "$text" ]] || fail "generate printed nothing"
echo "image-test: generate -> $text"

config=$(podman image inspect --format '{{.Config.User}} {{json .Config.ExposedPorts}} {{json .Config.Healthcheck}}' "$image")
[[ "$config" == llmserve* ]] || fail "image does not run as the llmserve user: $config"
[[ "$config" == *8000/tcp* ]] || fail "port 8000 not exposed: $config"
[[ "$config" == */health* ]] || fail "no health check on /health: $config"
echo "image-test: user, port and health check declared; image $(podman image inspect --format '{{.Size}}' "$image" | numfmt --to=iec)"
echo "image-test: passed"
