"""A real Prometheus server (Debian's package) scrapes a running distributed stack (each
service, a scheduler and a worker as processes of their own, each serving /metrics on its own
port, one scrape job per process kind as deploy/prometheus/prometheus.yml has it), and every
metric named by a Grafana dashboard or a Prometheus rule exists in what it scraped: a renamed
or removed metric fails here instead of leaving a panel empty or an alert silent.

A metric counts as scraped when Prometheus recorded its metadata (`/api/v1/targets/metadata`:
declared families, with or without samples yet, e.g. a labelled counter nothing has
incremented) or has a series of it (`/api/v1/label/__name__/values`). A series suffix must
match the family's type: ``_bucket``/``_count``/``_sum`` a histogram (or a summary for the
last two), ``_total`` a counter."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from tests.deploy.test_alert_rules import referenced_metrics
from tests.deploy.test_dashboards import dashboard_metrics
from tests.faults.distributed_layout import Layout, launch
from tests.integration.services.test_up_distributed import _clean_database, rabbitmqctl
from tests.ports import free_port

SUFFIX_TYPES = {
    "_bucket": {"histogram", "gaugehistogram"},
    "_count": {"histogram", "summary", "gaugehistogram"},
    "_sum": {"histogram", "summary", "gaugehistogram"},
    "_total": {"counter"},
}
SCRAPE_SECONDS = 1


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"armillary-scrape-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture
def layout(pg_url: str, truncate_sql: str, vhost: str, tmp_path: Path) -> Iterator[Layout]:
    _clean_database(pg_url, truncate_sql)
    found = launch(tmp_path / "stack", pg_url, vhost, metrics=True)
    try:
        yield found
    finally:
        found.stop_all()


def scrape_config(layout: Layout) -> dict[str, Any]:
    """One job per process kind, as deploy/prometheus/prometheus.yml."""
    jobs: dict[str, list[str]] = {}
    for name, port in layout.metrics_ports.items():
        jobs.setdefault(name.split("-")[0], []).append(f"127.0.0.1:{port}")
    return {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in sorted(jobs.items())
        ],
    }


@pytest.fixture
def prometheus(layout: Layout, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "install Debian's prometheus package (scripts/deploy-tools.sh does)"
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(layout)))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def wait_all_targets_up(url: str, expected: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    answer: Any = None
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{url}/api/v1/targets", timeout=5).json()
        except httpx.HTTPError:
            time.sleep(0.5)
            continue
        active = answer["data"]["activeTargets"]
        if len(active) == expected and all(t["health"] == "up" for t in active):
            return
        time.sleep(0.5)
    raise AssertionError(f"targets not all up: {answer}")


def scraped(url: str) -> tuple[dict[str, set[str]], set[str]]:
    """(metric family → types Prometheus recorded for it, names of series it holds)."""
    metadata = httpx.get(f"{url}/api/v1/targets/metadata", timeout=30).json()["data"]
    families: dict[str, set[str]] = {}
    for entry in metadata:
        families.setdefault(entry["metric"], set()).add(entry["type"])
    names = httpx.get(f"{url}/api/v1/label/__name__/values", timeout=30).json()["data"]
    return families, set(names)


def exists(name: str, families: dict[str, set[str]], series: set[str]) -> bool:
    if name in series or name in families:
        return True
    for suffix, types in SUFFIX_TYPES.items():
        if name.endswith(suffix) and families.get(name.removesuffix(suffix), set()) & types:
            return True
    return False


def test_every_metric_of_the_dashboards_and_rules_is_scraped(
    layout: Layout, prometheus: str
) -> None:
    wanted = dashboard_metrics() | referenced_metrics()
    assert len(wanted) > 30
    wait_all_targets_up(prometheus, expected=len(layout.metrics_ports))
    # Two more scrapes after all were up: every target's metadata is in.
    time.sleep(2 * SCRAPE_SECONDS + 1)
    families, series = scraped(prometheus)
    assert "armillary_http_requests" in families or "armillary_http_requests_total" in families
    missing = sorted(name for name in wanted if not exists(name, families, series))
    assert not missing, f"named by a dashboard or a rule but not scraped: {missing}"


def test_a_renamed_metric_would_be_missing() -> None:
    """The existence check is not vacuous: a wrong name or a suffix of another type fails."""
    families = {"armillary_http_requests": {"counter"}, "armillary_x_seconds": {"histogram"}}
    assert exists("armillary_http_requests_total", families, set())
    assert exists("armillary_x_seconds_bucket", families, set())
    assert not exists("armillary_http_request_total", families, set())
    assert not exists("armillary_http_requests_bucket", families, set())
    assert not exists("armillary_x_seconds_total", families, set())
