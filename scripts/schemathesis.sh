#!/usr/bin/env bash
# Fuzz the whole HTTP API with Schemathesis, as an admin, against a platform started here:
# the embedded shape on SQLite in a temporary home, on a free loopback port.
#
# Schemathesis lives in its own virtual environment (bench/.venvs/schemathesis, git-ignored,
# not in uv.lock). Exit status: non-zero when a check fails, above all a server error (5xx).
#
# Knobs: SCHEMATHESIS_MAX_EXAMPLES (per operation, default 20), SCHEMATHESIS_MAX_TIME
# (seconds of testing, default 140; start-up adds about 30), SCHEMATHESIS_CHECKS,
# SCHEMATHESIS_WORKERS; SCHEMATHESIS_KEEP=1 keeps the platform's home and log;
# SCHEMATHESIS_DATABASE_URL runs the platform on that (empty) database instead of SQLite.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SCHEMATHESIS_VERSION="4.32.5"
VENV="$ROOT/bench/.venvs/schemathesis"
ARMILLARY="$ROOT/.venv/bin/armillary"
PYTHON="$ROOT/.venv/bin/python"
# The uv that `make` installed (on a fresh machine it may not be on PATH).
UV="${UV:-$(command -v uv || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/uv")}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-20}"
MAX_TIME="${SCHEMATHESIS_MAX_TIME:-140}"
WORKERS="${SCHEMATHESIS_WORKERS:-2}"
CHECKS="${SCHEMATHESIS_CHECKS:-not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance}"

if [[ ! -x "$VENV/bin/schemathesis" ]]; then
  "$UV" venv --quiet --python 3.11 "$VENV"
  "$UV" pip install --quiet --python "$VENV/bin/python" "schemathesis==$SCHEMATHESIS_VERSION"
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [[ "${SCHEMATHESIS_KEEP:-0}" == 1 ]]; then
    echo "kept $WORK (server.log, home/)"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT

PORT="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
ADMIN_EMAIL="admin@armillary.dev"
ADMIN_PASSWORD="schemathesis-$("$PYTHON" -c 'import secrets; print(secrets.token_hex(12))')"

# The user rate limits would answer most of the fuzzer's requests 429 and hide the routes.
database=()
if [[ -n "${SCHEMATHESIS_DATABASE_URL:-}" ]]; then
  database=(ARMILLARY_DATABASE_URL="$SCHEMATHESIS_DATABASE_URL")
fi
env ARMILLARY_HOME="$WORK/home" "${database[@]}" \
  ARMILLARY_ADMIN_EMAIL="$ADMIN_EMAIL" \
  ARMILLARY_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
  ARMILLARY_RATE_LIMIT_ENABLED=false \
  ARMILLARY_LOG_LEVEL="${ARMILLARY_LOG_LEVEL:-WARNING}" \
  "$ARMILLARY" up --host 127.0.0.1 --port "$PORT" --workers 0 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 1 240); do
  if curl -fsS "$BASE/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "the platform did not start:" >&2
    tail -n 40 "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.5
done
curl -fsS "$BASE/readyz" >/dev/null

TOKEN="$(curl -fsS -d "username=$ADMIN_EMAIL" --data-urlencode "password=$ADMIN_PASSWORD" \
  "$BASE/api/v1/auth/token" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')"
# A real project with a dataset version and a workflow version, named in the config below,
# so that the fuzzer gets past the 404 of a made-up name into each route's own logic. The
# deletions get rows of their own ("doomed"), or the first one would leave nothing to test.
api() { curl -fsS -H "Authorization: Bearer $TOKEN" "$@" >/dev/null; }
printf 'x,y,label\n1,2.5,a\n2,,b\n3,4.0,a\n' >"$WORK/table.csv"
for project in fuzz doomed; do
  api -H 'Content-Type: application/json' -d "{\"slug\": \"$project\", \"name\": \"$project\"}" \
    "$BASE/api/v1/projects"
  for dataset in table doomed; do
    api -H 'Content-Type: application/json' -d "{\"name\": \"$dataset\"}" \
      "$BASE/api/v1/projects/$project/datasets"
    api -F "file=@$WORK/table.csv" "$BASE/api/v1/projects/$project/datasets/$dataset/versions"
  done
  for workflow in flow doomed; do
    api -H 'Content-Type: application/json' "$BASE/api/v1/projects/$project/workflows" -d \
      "{\"name\": \"$workflow\", \"tasks\": [{\"name\": \"w\", \"type\": \"sleep\", \"params\": {\"seconds\": 0}}]}"
  done
done

cat >"$WORK/schemathesis.toml" <<'TOML'
[parameters]
"path.project" = "fuzz"
"path.dataset" = "table"
"path.workflow" = "flow"

[[operations]]
include-method = "DELETE"
include-path = "/api/v1/projects/{project}"
parameters = { "path.project" = "doomed" }

[[operations]]
include-method = "DELETE"
include-path-regex = "^/api/v1/projects/\\{project\\}/(datasets|workflows)/"
parameters = { "path.dataset" = "doomed", "path.workflow" = "doomed" }
TOML

echo "schemathesis $SCHEMATHESIS_VERSION on $BASE: checks $CHECKS, at most $MAX_EXAMPLES examples per operation and ${MAX_TIME}s"
started=$(date +%s)
# `filter_too_much` is a health check of the generator, not of the API: for free-text path
# segments (deployment, model, bundle names) Hypothesis discards many candidates that do not
# survive URL encoding, and under load it gives up on them. Nothing is excluded.
status=0
# From the temporary directory: Schemathesis keeps its crash cache in ./.schemathesis.
(cd "$WORK" && "$VENV/bin/schemathesis" --config-file "$WORK/schemathesis.toml" run "$BASE/openapi.json" \
  --header "Authorization: Bearer $TOKEN" \
  --checks "$CHECKS" \
  --max-examples "$MAX_EXAMPLES" \
  --max-time "$MAX_TIME" \
  --workers "$WORKERS" \
  --request-timeout 30 \
  --seed 1 \
  --generation-database none \
  --suppress-health-check filter_too_much \
  --no-color) || status=$?
echo "schemathesis finished in $(($(date +%s) - started))s with status $status"
if grep -q '"level": *"error"\|Traceback' "$WORK/server.log"; then
  echo "server errors logged during the run:" >&2
  grep -m 20 '"level": *"error"\|Traceback' "$WORK/server.log" >&2 || true
fi
exit "$status"
