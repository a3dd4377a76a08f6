#!/usr/bin/env bash
# Starts a Docker engine for `make deploy-check` on its own socket, unless one answers there
# already, and prints `export DOCKER_HOST=...` for the caller to eval. The engine has no
# bridge and no iptables rules (these machines allow neither): containers use host networking.
#   eval "$(bash scripts/docker-engine.sh)"        # start (idempotent)
#   bash scripts/docker-engine.sh stop             # stop the engine this script started
# Its data root (images, the build cache, volumes) stays between runs on the same machine,
# so the base image and unchanged layers are built once.
set -euo pipefail
ROOT=${ARMILLARY_DOCKER_ROOT:-/var/lib/armillary-docker}
RUN=${ARMILLARY_DOCKER_RUN:-/run/armillary-docker}
SOCK="$RUN/docker.sock"
export DOCKER_HOST="unix://$SOCK"

if [ "${1:-start}" = stop ]; then
  if [ -f "$RUN/dockerd.pid" ]; then
    pid=$(cat "$RUN/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  exit 0
fi

if ! command -v dockerd >/dev/null; then
  (apt-get install -y -qq --no-install-recommends docker.io >/dev/null 2>&1 \
    || (apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io)) >&2
fi
if ! docker info >/dev/null 2>&1; then
  mkdir -p "$ROOT" "$RUN"
  # setsid: the engine outlives this script (and the make that ran it) until `stop`.
  setsid dockerd --data-root "$ROOT" --exec-root "$RUN/exec" --pidfile "$RUN/dockerd.pid" \
    -H "$DOCKER_HOST" --bridge=none --iptables=false --ip6tables=false --ip-masq=false \
    --log-level=warn >"$RUN/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start, see $RUN/dockerd.log" >&2; exit 1; }
fi
echo "export DOCKER_HOST=$DOCKER_HOST"
