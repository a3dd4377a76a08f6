#!/usr/bin/env bash
# Builds the local Debian base image (bookworm, minbase) with debootstrap, for machines that
# cannot pull from a container registry: the images are then built with
# `--build-arg BASE_IMAGE=armillary/base:bookworm`. Skipped when the image exists already
# (the engine's data root keeps it between runs). Needs DOCKER_HOST (scripts/docker-engine.sh).
#   bash scripts/base-image.sh            # prints the image's name
set -euo pipefail
IMAGE=${ARMILLARY_BASE_IMAGE:-armillary/base:bookworm}
SUITE=${ARMILLARY_BASE_SUITE:-bookworm}
MIRROR=${ARMILLARY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "$IMAGE"
  exit 0
fi
if ! command -v debootstrap >/dev/null; then
  (apt-get install -y -qq --no-install-recommends debootstrap >/dev/null 2>&1 \
    || (apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap)) >&2
fi
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >&2
# What a container needs that a chroot does not: no apt caches, the same sources list.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" --numeric-owner -c . \
  | docker import --change 'CMD ["bash"]' \
      --change "LABEL org.opencontainers.image.title=armillary-base org.opencontainers.image.base.name=debian:$SUITE" \
      - "$IMAGE" >/dev/null
echo "$IMAGE"
