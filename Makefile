# Armillary: the two set-up commands are `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(shell python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/uv
endif
VENV_BIN := .venv/bin
PYTEST_ARGS ?=

.PHONY: help run test test-suite deploy-check lint typecheck imports services sync sync-dev bench-auth bench-datasets clean

help:
	@echo "make run    - install, migrate and start the embedded platform on http://127.0.0.1:$${ARMILLARY_PORT:-8000}"
	@echo "make test   - install test dependencies, start PostgreSQL/Redis/RabbitMQ, lint, type-check, test with coverage"

$(UV):
	python3 -m pip install --quiet uv

sync: $(UV)
	$(UV) sync --frozen --no-dev --inexact

sync-dev: $(UV)
	$(UV) sync --frozen --extra boosting

run: sync
	bash scripts/sandbox-prereqs.sh $(VENV_BIN)/python
	$(VENV_BIN)/armillary db upgrade
	$(VENV_BIN)/armillary up

services:
	bash scripts/ensure-services.sh

lint: sync-dev
	$(VENV_BIN)/ruff check src tests bench scripts
	$(VENV_BIN)/ruff format --check src tests bench scripts

typecheck: sync-dev
	$(VENV_BIN)/mypy

imports: sync-dev
	$(VENV_BIN)/lint-imports

# `make test` runs each suite once and prints its time (scripts/timed.sh); the table at the end
# is what CI shows. The test suite runs on both cores (pytest-xdist, one database and one Redis
# database per worker, see tests/conftest.py).
PYTEST_WORKERS ?= 3
test: sync-dev services
	@rm -f .ci-times
	bash scripts/timed.sh lint $(MAKE) --no-print-directory lint
	bash scripts/timed.sh typecheck $(MAKE) --no-print-directory typecheck
	bash scripts/timed.sh imports $(MAKE) --no-print-directory imports
	bash scripts/sandbox-prereqs.sh $(VENV_BIN)/python
	bash scripts/browser-prereqs.sh
	bash scripts/timed.sh pytest $(MAKE) --no-print-directory test-suite
	UV=$(UV) bash scripts/timed.sh deploy-check $(MAKE) --no-print-directory deploy-check
	UV=$(UV) bash scripts/timed.sh schemathesis bash scripts/schemathesis.sh
	@echo "=== suite times"; cat .ci-times

# The unit, integration, security and e2e tests with coverage (85% overall, 80% per service)
# of the test processes: code the tests reach only through a subprocess (a worker, a
# service's own process, a sandbox) counts as missed. Measuring those too costs about half as
# much CPU again on a two-core machine: `make coverage-subprocesses` does it (outside CI).
PYTEST_RUN = ARMILLARY_TEST_DURATIONS_OUT=$(CURDIR)/.test-durations.json
PYTEST_OPTS = -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 --ignore=tests/deploy
test-suite:
	rm -f .coverage .coverage.*
	$(PYTEST_RUN) $(VENV_BIN)/pytest --cov --cov-report= $(PYTEST_OPTS) $(PYTEST_ARGS)
	$(VENV_BIN)/coverage report
	$(VENV_BIN)/python scripts/coverage_gate.py --overall 85 --per-service 80

.PHONY: coverage-subprocesses
coverage-subprocesses: sync-dev services
	bash scripts/sandbox-prereqs.sh $(VENV_BIN)/python
	rm -f .coverage .coverage.*
	COVERAGE_RCFILE=$(CURDIR)/tests/coverage-subprocesses.ini \
	COVERAGE_PROCESS_START=$(CURDIR)/tests/coverage-subprocesses.ini $(PYTEST_RUN) \
	  $(VENV_BIN)/coverage run -m pytest $(PYTEST_OPTS) $(PYTEST_ARGS)
	COVERAGE_RCFILE=$(CURDIR)/tests/coverage-subprocesses.ini $(VENV_BIN)/coverage combine -q
	COVERAGE_RCFILE=$(CURDIR)/tests/coverage-subprocesses.ini $(VENV_BIN)/coverage report

# Static checks of deploy/ (Helm chart, Terraform, Dockerfile, compose, CI files) with the
# checkers scripts/deploy-tools.sh installs into .tools/ (outside uv.lock).
deploy-check: sync-dev
	UV=$(UV) bash scripts/deploy-tools.sh
	$(VENV_BIN)/pytest -q -p no:cacheprovider -n 0 tests/deploy

bench-auth: sync-dev services
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(VENV_BIN)/python bench/auth_get/run.py

bench-datasets: sync-dev
	$(VENV_BIN)/python bench/datasets/transfer.py
	$(VENV_BIN)/python bench/datasets/profile_speed.py

clean:
	rm -rf .venv .coverage .coverage.* coverage.json .mypy_cache .ruff_cache .pytest_cache

# No-op task graphs against Prefect 3 (thread and dask-process runners) and Celery on RabbitMQ.
# Needs PostgreSQL, Redis and RabbitMQ on loopback; peer venvs go to bench/.venvs/ (not uv.lock).
.PHONY: bench-workflows
bench-workflows: sync-dev services
	$(VENV_BIN)/python bench/workflows/run.py

# Data-quality engine vs hand-written Polars, Pandera (Polars backend) and GX Core, 1 M and
# 10 M rows and 1,000 small frames; peers in bench/.venvs/quality (not uv.lock), about 15 min.
.PHONY: bench-quality
bench-quality: sync-dev
	$(VENV_BIN)/python bench/quality/run.py

# Training overhead: a random forest as a platform job (PostgreSQL, 2 workers) against the same
# training as a plain Python script, in one run (about 3 min).
.PHONY: bench-training
bench-training: sync-dev services
	$(VENV_BIN)/python bench/training/run.py

# Serving: Armillary (ONNX, API key) against `mlflow models serve` (its own venv under
# bench/.venvs/mlflow, not uv.lock) and in-process onnxruntime, wrk at c=1/16, 1 and 100 rows.
.PHONY: bench-serving
bench-serving: sync-dev services
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(VENV_BIN)/python bench/serving/run.py

# Schemathesis against a temporary embedded platform (SQLite), as admin: every operation of
# /openapi.json, bounded examples and under 3 min; fails on a server error or a response that
# breaks the document. Schemathesis has its own venv in bench/.venvs/ (not uv.lock).
.PHONY: schemathesis
schemathesis: sync-dev
	UV=$(UV) bash scripts/schemathesis.sh

# Events over RabbitMQ: commit-to-effect latency and throughput on a private node (ADR 0020).
.PHONY: bench-events
bench-events: sync-dev services
	$(VENV_BIN)/python bench/events/run.py

# Gateway overhead: the authenticated GET and a single-row predict, direct to the embedded
# platform, through the Envoy gateway and through a bare Envoy (wrk, c=1 and c=32, ~4 min).
.PHONY: bench-gateway
bench-gateway: sync-dev services
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(VENV_BIN)/python bench/gateway/run.py

# Fault tests at soak length: RabbitMQ held down 60 s instead of CI's 20 s (ADR 0020); the
# connection budget of the full distributed layout (ADR 0025).
.PHONY: soak
soak: sync-dev services
	ARMILLARY_FAULT_RABBITMQ_OUTAGE_SECONDS=60 $(VENV_BIN)/pytest -n 0 -q tests/faults/test_rabbitmq.py
	ARMILLARY_FAULT_BUDGET_FULL=1 $(VENV_BIN)/pytest -n 0 -q tests/faults/test_distributed_budget.py
	LOAD_DURATION=$${LOAD_DURATION:-3600} LOAD_USERS=$${LOAD_USERS:-40} $(VENV_BIN)/python bench/load/run.py

# Load test (requirement 10.5): Locust from bench/.venvs/load (outside uv.lock) against
# `armillary up --distributed` on private ports; fails when an SLO is broken (bench/load/slo.py).
.PHONY: bench-load
bench-load: sync-dev services
	$(VENV_BIN)/python bench/load/run.py --capacity

# Memory (PSS and RSS) of every process, at rest and under the authenticated GET, for
# `armillary up --workers 2` and `armillary up --distributed --workers 2` (issue 18).
.PHONY: bench-memory
bench-memory: sync-dev services
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(VENV_BIN)/python bench/memory/run.py

# Tracking (issue 20): 100,000 points through MLflow's client into Armillary (PostgreSQL) and
# `mlflow server` (SQLite; own venv bench/.venvs/mlflow-server, not uv.lock), and the SDK's
# per-call cost.
.PHONY: bench-tracking
bench-tracking: sync-dev services
	$(VENV_BIN)/python bench/tracking/run.py

# Console pages (issue 19): server time of every page on a project of 1,000 jobs, 100 model
# versions and a 200-task DAG (PostgreSQL, 2 workers), the job page's first paint in Debian's
# Chromium and the JavaScript's size (about 5 min).
.PHONY: bench-console
bench-console: sync-dev services
	bash scripts/browser-prereqs.sh
	$(VENV_BIN)/python bench/console/run.py
