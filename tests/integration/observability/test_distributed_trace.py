"""One trace across the distributed shape (ADR 0031): `armillary up --distributed` (Envoy,
one process per service, the scheduler and a worker) exporting to a test OTLP/HTTP receiver.

A job submitted through the gateway is one trace: the gateway's span, the workflows service's
server span, the worker's attempt and the sandboxed task child's span, the task's own call
back to the API (its traceparent came over the control socket), and the RabbitMQ publish and
consume of the job's failure event. A prediction's trace holds routing, model load and
inference. No bearer token or password reaches any exported attribute."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, TEST_SECRET
from tests.integration.observability.otlp_receiver import Receiver, Span, ancestors
from tests.integration.services.test_serve_processes import _clean_database
from tests.integration.services.test_up_distributed import (  # noqa: F401 - fixture
    METRICS_PROCESSES,
    Platform,
    free_port_range,
    up_env,
    vhost,
    wait_for,
)
from tests.integration.serving.predict_support import SIGNATURE, features, instances, model_bytes
from tests.ports import free_port

# A task that calls the API as its job, then fails (so the job's failure event goes over
# RabbitMQ to the alerts consumer).
SOURCE = """
def main(context):
    from armillary.sdk.task_api import TaskApi
    with TaskApi(context) as api:
        api.job()
    raise RuntimeError("traced to the end")
"""
JOB_STATUS = "workflows.job_status_changed"
SPEC = {
    "name": "traced",
    "tasks": [{"name": "call", "type": "python", "params": {"source": SOURCE}}],
}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


@pytest.fixture
def platform(
    pg_url: str,
    truncate_sql: str,
    vhost: str,  # noqa: F811 - the imported fixture
    tmp_path: Path,
    receiver: Receiver,
) -> Iterator[Platform]:
    _clean_database(pg_url, truncate_sql)
    port, metrics_port = free_port(), free_port_range(len(METRICS_PROCESSES))
    env = up_env(tmp_path, pg_url, vhost, metrics_port)
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_TRACES_SAMPLER="parentbased_always_on",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    log = tmp_path / "up.log"
    argv = ["up", "--distributed", "--port", str(port), "--workers", "1", "--no-migrate"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "armillary.cli", *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    found = Platform(process, f"http://127.0.0.1:{port}", log, metrics_port)
    try:
        yield found
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def failure_consumed(trace: list[Span]) -> list[Span]:
    """The consumer spans of the job's failure event: published in the scheduler's `job
    failed` span (a producer span), consumed (by the alerts consumer) as its child."""
    failed = {s.span_id for s in trace if s.name == "job failed"}
    producers = {
        s.span_id
        for s in trace
        if s.name == f"armillary.events,{JOB_STATUS} send" and s.parent_id in failed
    }
    return [s for s in trace if s.kind == "consumer" and s.parent_id in producers]


def one(spans: list[Span], **wanted: str) -> Span:
    found = [s for s in spans if all(getattr(s, k) == v for k, v in wanted.items())]
    assert found, (wanted, sorted({(s.service, s.kind, s.name) for s in spans}))
    return found[0]


def test_a_job_and_a_prediction_are_each_one_trace(platform: Platform, receiver: Receiver) -> None:
    with httpx.Client(base_url=platform.url, timeout=30) as c:

        def signed_in() -> str | None:
            answer = c.post(
                "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            return str(answer.json()["access_token"]) if answer.status_code == 200 else None

        token = str(wait_for(signed_in, 180, "the platform never answered", platform))
        headers = {"Authorization": f"Bearer {token}"}
        assert c.post("/api/v1/projects", json={"slug": "tr", "name": "Tr"}, headers=headers)
        base = "/api/v1/projects/tr"
        assert c.post(f"{base}/workflows", json=SPEC, headers=headers).status_code == 201
        submitted = c.post(f"{base}/workflows/traced/jobs", json={}, headers=headers)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]

        # -- the job's trace --------------------------------------------------------------
        def job_server_span(spans: list[Span]) -> Span | None:
            for span in spans:
                if (
                    span.service == "armillary-workflows"
                    and span.kind == "server"
                    and span.name == "POST /api/v1/projects/{project}/workflows/{workflow}/jobs"
                ):
                    return span
            return None

        def complete(spans: list[Span]) -> bool:
            server = job_server_span(spans)
            if server is None:
                return False
            trace = [s for s in spans if s.trace_id == server.trace_id]
            consumed = failure_consumed(trace)
            # The task's call, served once its whole chain (worker proxy, gateway) is in.
            children = {s.span_id for s in trace if s.name == "task child"}
            served = any(
                children & {a.span_id for a in ancestors(s, trace)}
                for s in trace
                if s.kind == "server" and s.attributes.get("http.route") == "/api/v1/jobs/{job_id}"
            )
            return (
                bool(consumed)
                and served
                and {
                    "task child",
                    "task python",
                    "ingress",
                }
                <= {s.name for s in trace}
            )

        spans = receiver.wait_for(complete, timeout=120)
        server = job_server_span(spans)
        assert server is not None
        trace = [s for s in spans if s.trace_id == server.trace_id]
        services = {s.service for s in trace}
        assert {"armillary-gateway", "armillary-workflows", "armillary-worker"} <= services
        # Envoy's span is the service's parent. The trace holds more than one gateway span
        # (the task's own call to the API also passes the gateway), so look for it among them.
        above = ancestors(server, trace)
        assert any(s.service == "armillary-gateway" and s.kind == "server" for s in above)
        attempt = one(trace, service="armillary-worker", name="task python")
        child = one(trace, service="armillary-worker", name="task child")
        assert attempt in ancestors(child, trace)
        assert attempt.attributes["armillary.job_id"] == job_id
        # The task's own call (GET /api/v1/jobs/{id}) is served in the child's trace.
        called = [
            s
            for s in trace
            if s.kind == "server"
            and s.service == "armillary-workflows"
            and s.attributes.get("http.route") == "/api/v1/jobs/{job_id}"
        ]
        assert any(child in ancestors(s, trace) for s in called)
        # The job's failure event: published in the scheduler's `job failed` span, consumed
        # (by the alerts consumer) as that publish's child.
        assert failure_consumed(trace), sorted((s.service, s.kind, s.name) for s in trace)
        # X-Request-Id is on the service's server span.
        assert server.attributes.get("armillary.request_id")

        # -- a prediction's trace ---------------------------------------------------------
        assert c.post(f"{base}/models", json={"name": "churn"}, headers=headers).is_success
        model = c.post(
            f"{base}/models/churn/versions/upload",
            files={"file": ("model.onnx", model_bytes("good"), "application/octet-stream")},
            data={"signature": json.dumps(SIGNATURE)},
            headers=headers,
        )
        assert model.status_code == 201, model.text
        deployment = {
            "name": "churn-api",
            "routing": {"mode": "random"},
            "variants": [{"name": "main", "model": "churn", "version": 1, "weight": 1}],
        }
        assert c.post(f"{base}/deployments", json=deployment, headers=headers).is_success
        created = c.post(
            f"{base}/deployments/churn-api/keys", json={"name": "app"}, headers=headers
        )
        key = str(created.json()["key"])
        predicted = c.post(
            f"{base}/deployments/churn-api/predict",
            json={"instances": instances(features(3, 3))},
            headers={"X-API-Key": key},
        )
        assert predicted.status_code == 200, predicted.text

        def inference(spans: list[Span]) -> bool:
            # Envoy exports on its own schedule: wait for its span of the same trace too.
            ids = {s.trace_id for s in spans if s.name == "model inference"}
            return any(s.service == "armillary-gateway" and s.trace_id in ids for s in spans)

        spans = receiver.wait_for(inference, timeout=60)
        inferred = one(spans, name="model inference")
        predict_trace = [s for s in spans if s.trace_id == inferred.trace_id]
        names = {s.name for s in predict_trace}
        assert {"prediction route", "model load", "model inference"} <= names
        assert "armillary-gateway" in {s.service for s in predict_trace}

    # No credential anywhere in what was exported.
    secrets = [token, ADMIN_PASSWORD, key, TEST_SECRET]
    for span in receiver.snapshot():
        for name, value in span.attributes.items():
            assert "authorization" not in name.lower(), (span.name, name)
            assert not any(secret in str(value) for secret in secrets), (span.name, name)
