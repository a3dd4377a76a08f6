"""Data pipelines end to end on real data (scikit-learn's bundled iris): ingest a dataset
version, validate it, transform it with SQL, write the result as a new dataset version; a
failing `error` check halts the pipeline before anything is written."""

from __future__ import annotations

import asyncio
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from sklearn.datasets import load_iris
from tests.integration.workflows.engine import Engine, Steps, tasks_by_name
from tests.integration.workflows.test_alerts import Receiver, verify_signature, webhook

pytestmark = pytest.mark.slow


def iris_csv(path: Path, *, defect: bool = False) -> Path:
    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame = pl.DataFrame(iris.data, schema=names).with_columns(pl.Series("target", iris.target))
    if defect:
        # One missing measurement: the not_null gate must catch it.
        frame = frame.with_columns(
            pl.when(pl.int_range(pl.len()) == 7)
            .then(None)
            .otherwise(pl.col("sepal_length"))
            .alias("sepal_length")
        )
    frame.write_csv(path)
    return path


async def upload(steps: Steps, token: str, project: str, name: str, path: Path) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    created = await steps.client.post(
        f"/api/v1/projects/{project}/datasets", json={"name": name}, headers=headers
    )
    assert created.status_code == 201, created.text
    with path.open("rb") as handle:
        response = await steps.client.post(
            f"/api/v1/projects/{project}/datasets/{name}/versions",
            files={"file": (path.name, handle, "text/csv")},
            data={"format": "csv"},
            headers=headers,
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


def pipeline(checks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "iris-pipeline",
        "tasks": [
            {"name": "load", "type": "ingest", "params": {"dataset": "iris", "version": 1}},
            {
                "name": "check",
                "type": "validate",
                "params": {"input": "load", "checks": checks},
                "needs": ["load"],
            },
            {
                "name": "summarise",
                "type": "transform",
                "params": {
                    "inputs": ["check"],
                    "sql": "SELECT target, count(*) AS n, avg(sepal_length) AS mean_sepal "
                    'FROM "check" GROUP BY target ORDER BY target',
                },
                "needs": ["check"],
            },
            {
                "name": "save",
                "type": "write_dataset",
                "params": {"input": "summarise", "dataset": "iris-summary"},
                "needs": ["summarise"],
            },
        ],
    }


GATE = [
    {"type": "not_null", "column": "sepal_length"},
    {"type": "in_range", "column": "petal_width", "min": 0, "max": 3},
    {"type": "row_count", "min": 100},
    # A warning is recorded but does not stop anything.
    {"type": "in_range", "column": "sepal_width", "min": 0, "max": 4, "severity": "warn"},
]


async def test_a_clean_dataset_flows_through_to_a_new_dataset_version(
    platform: tuple[Engine, Steps], editor: dict[str, Any], tmp_path: Path
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    headers = {"Authorization": f"Bearer {token}"}
    await upload(steps, token, project, "iris", iris_csv(tmp_path / "iris.csv"))
    await steps.workflow(token, project, pipeline(GATE))
    job = await steps.run(token, project, "iris-pipeline")
    done = await steps.wait(token, job["id"], timeout=120)
    runs = tasks_by_name(done)
    assert done["status"] == "succeeded", {n: (r["status"], r["error"]) for n, r in runs.items()}
    assert runs["load"]["outputs"]["rows"] == 150
    report = runs["check"]["report"]
    assert report["passed"] is True
    assert [c["passed"] for c in report["checks"]] == [True, True, True, False]
    assert runs["summarise"]["outputs"]["rows"] == 3
    # The result is a new dataset version with its lineage.
    saved = runs["save"]["outputs"]
    version = await steps.client.get(
        f"/api/v1/projects/{project}/datasets/iris-summary/versions/{saved['version']}",
        headers=headers,
    )
    assert version.status_code == 200, version.text
    lineage = version.json()["lineage"]
    assert lineage["job_id"] == job["id"]
    assert lineage["task"] == "save"
    # The report is linked to the dataset version it checked.
    quality = await steps.client.get(
        f"/api/v1/projects/{project}/datasets/iris/versions/1/quality", headers=headers
    )
    assert quality.status_code == 200, quality.text
    assert quality.json()["passed"] is True
    assert quality.json()["job_id"] == job["id"]


async def test_a_failing_gate_halts_the_pipeline_writes_nothing_and_alerts(
    platform: tuple[Engine, Steps], editor: dict[str, Any], tmp_path: Path
) -> None:
    engine, steps = platform
    # Alerts go out from whichever process handles the event; here, a local receiver.
    private = {"ARMILLARY_WORKFLOWS_ALERT_ALLOW_PRIVATE_TARGETS": "true"}
    engine.start("scheduler", "scheduler", **private)
    engine.start("worker", "worker", **private)
    token, project = editor["token"], editor["project"]
    headers = {"Authorization": f"Bearer {token}"}
    receiver = Receiver()
    try:
        channel = await steps.client.post(
            f"/api/v1/projects/{project}/alerts/channels",
            json=webhook(receiver.url("/gate")),
            headers=headers,
        )
        assert channel.status_code == 201, channel.text
        rule = await steps.client.post(
            f"/api/v1/projects/{project}/alerts/rules",
            json={
                "name": "gates",
                "kind": "quality_gate_failed",
                "channel_ids": [channel.json()["id"]],
            },
            headers=headers,
        )
        assert rule.status_code == 201, rule.text
        await _halts(engine, steps, token, project, headers, tmp_path)
        deadline = time.monotonic() + 60
        while not receiver.accepted("/gate"):
            assert time.monotonic() < deadline, "no alert arrived"
            await asyncio.sleep(0.2)
        (alert,) = receiver.accepted("/gate")
        verify_signature(alert["headers"], alert["raw"])
        assert alert["json"]["event"] == "quality_gate_failed"
        assert alert["json"]["task"]["name"] == "check"
        assert alert["json"]["details"]["failed_checks"] == ["not_null(sepal_length)"]
    finally:
        receiver.close()


async def _halts(
    engine: Engine,
    steps: Steps,
    token: str,
    project: str,
    headers: dict[str, str],
    tmp_path: Path,
) -> None:
    await upload(steps, token, project, "iris", iris_csv(tmp_path / "iris.csv", defect=True))
    await steps.workflow(token, project, pipeline(GATE))
    job = await steps.run(token, project, "iris-pipeline")
    done = await steps.wait(token, job["id"], timeout=120)
    assert done["status"] == "failed"
    runs = tasks_by_name(done)
    check = runs["check"]
    assert check["status"] == "failed"
    # The failed gate's report is kept on the task run, with the failing row sampled.
    not_null = check["report"]["checks"][0]
    assert (not_null["passed"], not_null["failing_count"]) == (False, 1)
    assert not_null["failing_sample"][0]["values"]["sepal_length"] is None
    assert check["report"]["passed"] is False
    assert runs["summarise"]["status"] == "upstream_failed"
    assert runs["save"]["status"] == "upstream_failed"
    missing = await steps.client.get(
        f"/api/v1/projects/{project}/datasets/iris-summary", headers=headers
    )
    assert missing.status_code == 404
    quality = await steps.client.get(
        f"/api/v1/projects/{project}/datasets/iris/versions/1/quality", headers=headers
    )
    assert quality.json()["passed"] is False


async def test_a_pipeline_naming_a_missing_column_is_refused(
    platform: tuple[Engine, Steps], editor: dict[str, Any], tmp_path: Path
) -> None:
    _, steps = platform
    token, project = editor["token"], editor["project"]
    await upload(steps, token, project, "iris", iris_csv(tmp_path / "iris.csv"))
    spec = pipeline([{"type": "not_null", "column": "sepal_lenght"}])
    spec["tasks"][0]["params"]["version"] = 1
    response = await steps.client.post(
        f"/api/v1/projects/{project}/workflows",
        json=spec,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [(e["path"], e["kind"]) for e in errors] == [
        ("tasks[1].params.checks[0].column", "missing_object")
    ]
    spec["tasks"][0]["params"]["dataset"] = "nope"
    response = await steps.client.post(
        f"/api/v1/projects/{project}/workflows",
        json=spec,
        headers={"Authorization": f"Bearer {token}"},
    )
    assert [e["path"] for e in response.json()["errors"]] == ["tasks[0].params.dataset"]


async def test_ingest_fetches_a_url_only_where_the_operator_allows_it(
    platform: tuple[Engine, Steps], editor: dict[str, Any], tmp_path: Path
) -> None:
    """The SSRF guard runs in the task: loopback is refused, unless the operator's allow-list
    (here one loopback port) admits it."""
    engine, steps = platform
    served = tmp_path / "served"
    served.mkdir()
    iris_csv(served / "iris.csv")
    handler = partial(SimpleHTTPRequestHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        engine.start("scheduler", "scheduler")
        token, project = editor["token"], editor["project"]
        url = f"http://127.0.0.1:{port}/iris.csv"
        await steps.workflow(
            token,
            project,
            {"name": "fetch", "tasks": [{"name": "get", "type": "ingest", "params": {"url": url}}]},
        )
        engine.start("worker", "worker")
        refused = await steps.wait(token, (await steps.run(token, project, "fetch"))["id"])
        assert refused["status"] == "failed"
        assert "loopback" in tasks_by_name(refused)["get"]["error"]
        engine.stop("worker")
        allow = {"ARMILLARY_DATA_INGEST_ALLOW_NETWORKS": f"127.0.0.1/32:{port}"}
        engine.start("worker-allowed", "worker", **allow)
        fetched = await steps.wait(token, (await steps.run(token, project, "fetch"))["id"])
        assert fetched["status"] == "succeeded", tasks_by_name(fetched)["get"]["error"]
        assert tasks_by_name(fetched)["get"]["outputs"]["rows"] == 150
    finally:
        server.shutdown()
        server.server_close()
