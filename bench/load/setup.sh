#!/usr/bin/env bash
# Makes the load test's venv, bench/.venvs/load, with bench/load/requirements.txt (outside
# uv.lock), and checks that Locust runs. Idempotent: an up-to-date venv is left as it is.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../.venvs/load"
export PIP_DISABLE_PIP_VERSION_CHECK=1 DO_NOT_TRACK=1
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$venv/bin/locust" --version
