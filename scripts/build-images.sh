#!/usr/bin/env bash
# Builds every target of deploy/docker/Dockerfile with BuildKit, tagged as deploy/compose.yaml
# names them (armillary:dev, armillary-<role>:dev), and, with `--standins`, the stand-ins of
# deploy/docker/standins/ that replace the third-party images a machine without a container
# registry cannot pull (deploy/compose.check.yaml). Prints each image's size.
#   BASE_IMAGE=armillary/base:bookworm bash scripts/build-images.sh [--standins]
# Behind a TLS-intercepting proxy set ARMILLARY_BUILD_CA to its CA bundle: it reaches the
# build as the BuildKit secret `ca`, never a layer. Needs DOCKER_HOST (scripts/docker-engine.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
TAG=${ARMILLARY_TAG:-dev}
# The engine's own client speaks BuildKit without the buildx plugin; a newer client on the
# PATH may not.
DOCKER=${DOCKER:-docker}
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
export DOCKER_BUILDKIT=1
secret=()
if [ -n "${ARMILLARY_BUILD_CA:-}" ]; then
  secret=(--secret "id=ca,src=$ARMILLARY_BUILD_CA")
fi
build() {  # build NAME DOCKERFILE CONTEXT TARGET
  local started=$SECONDS
  "$DOCKER" build --network host --progress plain "${secret[@]}" \
    --build-arg "BASE_IMAGE=$BASE_IMAGE" --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -f "$2" --target "$4" -t "$1" "$3" >>"${ARMILLARY_BUILD_LOG:-/dev/null}" 2>&1
  printf '%-40s %8s  built in %ss\n' "$1" \
    "$("$DOCKER" image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0fMB", $1/1e6}')" $((SECONDS - started))
}
build "armillary:$TAG" deploy/docker/Dockerfile . api
for role in control gateway scheduler worker migrations; do
  build "armillary-$role:$TAG" deploy/docker/Dockerfile . "$role"
done
if [ "${1:-}" = --standins ]; then
  for role in postgres redis rabbitmq objectstore; do
    build "armillary-standin-$role:$TAG" deploy/docker/standins/Dockerfile deploy/docker/standins "$role"
  done
fi
# The images a rebuild replaced (dangling) would fill the engine's data root run after run.
"$DOCKER" image prune -f >/dev/null
