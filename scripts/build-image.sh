#!/usr/bin/env bash
# Builds the llmserve container image (Containerfile) with podman, else docker: `make image`.
# IMAGE (default llmserve:latest) names it. Where the Debian base images cannot be pulled (an offline machine),
# a local base is made with debootstrap --variant=minbase and tagged debian:12 and debian:12-slim first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
image=${IMAGE:-llmserve:latest}

if command -v podman >/dev/null; then
  tool=podman
  # chroot isolation runs the RUN steps without a container runtime (works in unprivileged sandboxes too).
  # docker format: OCI images cannot carry HEALTHCHECK.
  build_flags=(--isolation "${BUILD_ISOLATION:-chroot}" --format docker)
elif command -v docker >/dev/null; then
  tool=docker
  build_flags=()
else
  echo "image: neither podman nor docker is installed (Debian: apt-get install podman buildah)" >&2
  exit 1
fi

have_image() { $tool image inspect "$1" >/dev/null 2>&1 || $tool pull -q "$1" >/dev/null 2>&1; }
base_args=()
if ! have_image debian:12 || ! have_image debian:12-slim; then
  if ! $tool image inspect localhost/debian:12-slim >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || {
      echo "image: cannot pull debian:12 / debian:12-slim and debootstrap is not installed to make them" >&2
      exit 1
    }
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    echo "image: the Debian base images cannot be pulled; making one with debootstrap --variant=minbase"
    debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
    tar -C "$rootfs" -c . | $tool import - localhost/debian:12-slim >/dev/null
  fi
  # The minimal base serves both stages (the build stage installs its compilers itself).
  base_args=(--build-arg DEBIAN=localhost/debian:12-slim --build-arg DEBIAN_SLIM=localhost/debian:12-slim)
fi

$tool build "${build_flags[@]}" "${base_args[@]}" -f "$root/Containerfile" -t "$image" "$root"
echo "image: built $image ($($tool image inspect --format '{{.Size}}' "$image" | numfmt --to=iec) uncompressed)"
