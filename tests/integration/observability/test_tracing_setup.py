"""Tracing in one real process (ADR 0031): off without an OTLP endpoint variable; with one,
spans reach an OTLP/HTTP receiver, log lines carry the current trace and span ids, the
server span records X-Request-Id, and no credential reaches any exported attribute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.observability.otlp_receiver import Receiver
from tests.integration.observability.traced_process import SECRETS

from armillary.gateway.config import bootstrap
from armillary.gateway.runner import envoy_command, write_config
from armillary.gateway.settings import GatewaySettings
from armillary.kit.tracing import REQUEST_ID, sampling_ratio
from armillary.kit.tracing_export import scrub_attributes

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running


def run_probe(receiver: Receiver, **otel: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(otel, OTEL_BSP_SCHEDULE_DELAY="50")
    return subprocess.run(
        [sys.executable, "-m", "tests.integration.observability.traced_process", receiver.url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_tracing_is_off_without_an_otlp_endpoint(receiver: Receiver) -> None:
    probe = run_probe(receiver)
    assert probe.returncode == 0, probe.stderr
    # No SDK provider installed: the API's proxy (no-op) provider stays.
    assert probe.stdout.split() == ["tracing", "off", "ProxyTracerProvider"]
    assert receiver.snapshot() == []


def test_spans_logs_request_id_and_no_secrets(receiver: Receiver) -> None:
    probe = run_probe(
        receiver,
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_TRACES_SAMPLER="parentbased_always_on",
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split()[:2] == ["tracing", "on"], probe.stdout
    spans = receiver.wait_for(lambda s: any(x.kind == "client" for x in s), timeout=30)
    assert {s.service for s in spans} == {"armillary-probe"}
    [server] = [s for s in spans if s.kind == "server"]
    [client] = [s for s in spans if s.kind == "client"]
    assert client.trace_id == server.trace_id
    assert client.parent_id == server.span_id
    assert server.attributes[REQUEST_ID] == "probe-1"
    assert server.attributes["http.route"] == "/api/v1/downloads/{token}"
    # Nothing secret in any attribute of any span, nor in the raw export.
    for span in spans:
        for key, value in span.attributes.items():
            assert not any(secret in f"{key}={value}" for secret in SECRETS), (key, value)
            assert "authorization" not in key.lower()
    raw = b"".join(receiver.bodies)
    assert not any(secret.encode() in raw for secret in SECRETS)
    # The log line written inside the handler carries the server span's ids.
    lines = [json.loads(line) for line in probe.stderr.splitlines() if line.startswith("{")]
    [inside] = [line for line in lines if line.get("event") == "probe.inside"]
    assert inside["trace_id"] == server.trace_id
    assert inside["span_id"] == server.span_id
    [call] = receiver.gets
    version, trace_id, parent_id, flags = call["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", server.trace_id, client.span_id)
    assert int(flags, 16) & 1  # sampled


def test_an_unsampled_request_exports_nothing_and_propagates_its_trace(
    receiver: Receiver,
) -> None:
    """ADR 0036: the request skips the instrumentations, yet its trace id reaches the log
    line and, flagged unsampled, the outgoing call."""
    probe = run_probe(
        receiver, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_TRACES_SAMPLER_ARG="0"
    )
    assert probe.returncode == 0, probe.stderr
    lines = [json.loads(line) for line in probe.stderr.splitlines() if line.startswith("{")]
    [inside] = [line for line in lines if line.get("event") == "probe.inside"]
    [call] = receiver.gets
    version, trace_id, span_id, flags = call["traceparent"].split("-")
    assert version == "00"
    assert not int(flags, 16) & 1
    assert inside["trace_id"] == trace_id
    assert inside["span_id"] == span_id
    assert receiver.snapshot() == []


def test_scrubbing_rules() -> None:
    kept = scrub_attributes(
        {
            "http.request.header.authorization": ("Bearer a",),
            "http.request.header.x-request-id": ("r-1",),
            "http.url": "http://api/api/v1/downloads/t0ken?x=1",
            "http.target": "/api/v1/downloads/t0ken?x=1",
            "http.route": "/api/v1/downloads/{token}",
            "db.statement": "SELECT 1 WHERE password = $1",
            "note": "sent Bearer abc.def",
            "app.api_key": "k",
        },
        server=True,
    )
    assert kept == {
        "http.request.header.x-request-id": ("r-1",),
        "http.url": "http://api/api/v1/downloads/{token}",
        "http.target": "/api/v1/downloads/{token}",
        "http.route": "/api/v1/downloads/{token}",
        "db.statement": "SELECT 1 WHERE password = $1",
        "note": "sent Bearer [redacted]",
    }
    # A client's URL keeps its path and loses its query (a presigned URL's signature).
    client = scrub_attributes({"url.full": "https://bucket/o?X-Amz-Signature=s"}, server=False)
    assert client == {"url.full": "https://bucket/o"}


def test_gateway_sampling_follows_otel_variables() -> None:
    assert sampling_ratio({}) == 1.0
    assert sampling_ratio({"OTEL_TRACES_SAMPLER_ARG": "0.1"}) == 0.1
    assert sampling_ratio({"OTEL_TRACES_SAMPLER": "always_off"}) == 0.0
    assert sampling_ratio({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}) == 1.0


def test_the_gateway_traces_iff_an_otlp_endpoint_is_set(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    off = bootstrap(GatewaySettings())
    assert "tracing" not in _manager(off)
    assert "otlp" not in {c["name"] for c in off["static_resources"]["clusters"]}

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector.internal:4318/")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
    settings = GatewaySettings()
    on = bootstrap(settings)
    tracing = _manager(on)["tracing"]
    assert tracing["random_sampling"] == {"value": pytest.approx(10.0)}
    http = tracing["provider"]["typed_config"]["http_service"]["http_uri"]
    assert http["uri"] == "https://collector.internal:4318/v1/traces"
    [otlp] = [c for c in on["static_resources"]["clusters"] if c["name"] == "otlp"]
    assert otlp["transport_socket"]["typed_config"]["sni"] == "collector.internal"
    config = write_config(settings, tmp_path / "envoy.yaml")
    result = subprocess.run(
        envoy_command(settings, config, validate=True),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    [public] = [
        item for item in config["static_resources"]["listeners"] if item["name"] == "public"
    ]
    typed: dict[str, Any] = public["filter_chains"][0]["filters"][0]["typed_config"]
    return typed
