"""MLflow's run endpoints: create (nested), log, get, update, search, delete, history."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import Api, auth
from tests.integration.tracking.support import Mlflow, assert_error


def _kv(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["key"]: i["value"] for i in items}


async def test_run_lifecycle_and_logging(mlflow: Mlflow) -> None:
    experiment = await mlflow.experiment("lifecycle")
    run = await mlflow.run(
        experiment,
        run_name="first",
        user_id="alice",
        tags=[{"key": "mlflow.source.name", "value": "train.py"}],
    )
    run_id = run["info"]["run_id"]
    assert run["info"]["run_uuid"] == run_id
    assert len(run_id) == 32
    assert run["info"]["status"] == "RUNNING"
    assert run["info"]["run_name"] == "first"
    assert _kv(run["data"]["tags"])["mlflow.runName"] == "first"

    await mlflow.ok("POST", "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})
    # The same value again is fine; another value is MLflow's error: params are immutable.
    await mlflow.ok("POST", "runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "0.1"})
    changed = await mlflow.post("runs/log-parameter", {"run_id": run_id, "key": "lr", "value": "1"})
    assert_error(changed, 400, "INVALID_PARAMETER_VALUE")
    await mlflow.ok(
        "POST",
        "runs/log-batch",
        {
            "run_id": run_id,
            "metrics": [
                {"key": "loss", "value": 0.9, "timestamp": 10, "step": 0},
                {"key": "loss", "value": 0.5, "timestamp": 11, "step": 1},
                {"key": "acc", "value": "NaN", "timestamp": 11, "step": 0},
            ],
            "params": [{"key": "depth", "value": "4"}],
            "tags": [{"key": "team", "value": "ds"}],
        },
    )
    # Logged late but at an earlier step: history keeps it, the latest value does not move.
    await mlflow.ok(
        "POST",
        "runs/log-metric",
        {"run_uuid": run_id, "key": "loss", "value": 2.0, "timestamp": 12, "step": 0},
    )
    # A refused batch changes nothing: its unit of work rolls back whole.
    refused_batch = await mlflow.post(
        "runs/log-batch",
        {
            "run_id": run_id,
            "params": [{"key": "fresh", "value": "1"}, {"key": "lr", "value": "0.2"}],
            "tags": [{"key": "fresh", "value": "1"}],
        },
    )
    assert_error(refused_batch, 400, "INVALID_PARAMETER_VALUE")
    await mlflow.ok("POST", "runs/set-tag", {"run_id": run_id, "key": "note", "value": "x"})
    await mlflow.ok("POST", "runs/delete-tag", {"run_id": run_id, "key": "note"})

    got = (await mlflow.ok("GET", "runs/get", {"run_id": run_id}))["run"]
    assert _kv(got["data"]["params"]) == {"lr": "0.1", "depth": "4"}
    metrics = {m["key"]: m for m in got["data"]["metrics"]}
    assert metrics["loss"] == {"key": "loss", "value": 0.5, "timestamp": 11, "step": 1}
    assert metrics["acc"]["value"] == "NaN"
    tags = _kv(got["data"]["tags"])
    assert tags["team"] == "ds"
    assert "note" not in tags
    assert tags["mlflow.user"] == "alice"

    history = await mlflow.ok(
        "GET", "metrics/get-history", {"run_id": run_id, "metric_key": "loss"}
    )
    assert [(m["value"], m["step"]) for m in history["metrics"]] == [(0.9, 0), (0.5, 1), (2.0, 0)]

    info = await mlflow.ok(
        "POST", "runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 99}
    )
    assert info["run_info"]["status"] == "FINISHED"
    assert info["run_info"]["end_time"] == 99
    bad_status = await mlflow.post("runs/update", {"run_id": run_id, "status": "DONE"})
    assert_error(bad_status, 400, "INVALID_PARAMETER_VALUE")

    await mlflow.ok("POST", "runs/delete", {"run_id": run_id})
    deleted = (await mlflow.ok("GET", "runs/get", {"run_id": run_id}))["run"]
    assert deleted["info"]["lifecycle_stage"] == "deleted"
    refused = await mlflow.post(
        "runs/log-metric", {"run_id": run_id, "key": "loss", "value": 1, "timestamp": 1}
    )
    assert_error(refused, 400, "INVALID_PARAMETER_VALUE")
    await mlflow.ok("POST", "runs/restore", {"run_id": run_id})
    missing = await mlflow.get("runs/get", {"run_id": "0" * 32})
    assert_error(missing, 404, "RESOURCE_DOES_NOT_EXIST")


async def test_nested_runs_and_the_default_experiment(mlflow: Mlflow) -> None:
    parent = await mlflow.run("0", run_name="study")
    parent_id = parent["info"]["run_id"]
    default = (await mlflow.ok("GET", "experiments/get", {"experiment_id": "0"}))["experiment"]
    assert default["name"] == "Default"
    assert parent["info"]["experiment_id"] == default["experiment_id"]
    child = await mlflow.run(
        "0", tags=[{"key": "mlflow.parentRunId", "value": parent_id}], run_name="trial-1"
    )
    found = await mlflow.ok(
        "POST",
        "runs/search",
        {"experiment_ids": ["0"], "filter": f"tags.mlflow.parentRunId = '{parent_id}'"},
    )
    assert [r["info"]["run_id"] for r in found["runs"]] == [child["info"]["run_id"]]
    orphan = await mlflow.post(
        "runs/create",
        {"experiment_id": "0", "tags": [{"key": "mlflow.parentRunId", "value": "a" * 32}]},
    )
    assert_error(orphan, 404, "RESOURCE_DOES_NOT_EXIST")


async def test_search_filters_order_and_pages(mlflow: Mlflow) -> None:
    experiment = await mlflow.experiment("search")
    ids = []
    for n, (acc, lr) in enumerate([(0.7, "0.1"), (0.9, "0.01"), (0.8, "0.1"), (0.6, "0.3")]):
        run_id = (await mlflow.run(experiment, run_name=f"r{n}", start_time=1000 + n))["info"][
            "run_id"
        ]
        ids.append(run_id)
        await mlflow.ok(
            "POST",
            "runs/log-batch",
            {
                "run_id": run_id,
                "metrics": [{"key": "acc", "value": acc, "timestamp": 1, "step": 0}],
                "params": [{"key": "lr", "value": lr}],
                "tags": [{"key": "kind", "value": "even" if n % 2 == 0 else "odd"}],
            },
        )
    await mlflow.ok("POST", "runs/update", {"run_id": ids[3], "status": "FINISHED"})

    async def names(**body: Any) -> list[str]:
        found = await mlflow.ok("POST", "runs/search", {"experiment_ids": [experiment], **body})
        return [r["info"]["run_name"] for r in found.get("runs", [])]

    assert await names() == ["r3", "r2", "r1", "r0"]  # newest first
    assert await names(filter="metrics.acc > 0.65", order_by=["metrics.acc DESC"]) == [
        "r1",
        "r2",
        "r0",
    ]
    assert await names(
        filter="params.lr = '0.1' and tags.kind = 'even'", order_by=["run_name"]
    ) == [
        "r0",
        "r2",
    ]
    assert await names(filter="params.`lr` IN ('0.01', '0.3')", order_by=["params.lr"]) == [
        "r1",
        "r3",
    ]
    assert await names(filter="attributes.status = 'FINISHED'") == ["r3"]
    assert await names(filter="attributes.run_name LIKE 'r%' AND metrics.acc <= 0.7") == [
        "r3",
        "r0",
    ]
    assert await names(filter=f"attributes.run_id = '{ids[2]}'") == ["r2"]
    assert await names(filter="attributes.start_time >= 1002") == ["r3", "r2"]

    seen: list[str] = []
    token = None
    while True:
        body: dict[str, Any] = {"max_results": 3, "order_by": ["metrics.acc ASC"]}
        if token:
            body["page_token"] = token
        page = await mlflow.ok("POST", "runs/search", {"experiment_ids": [experiment], **body})
        seen += [r["info"]["run_name"] for r in page["runs"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == ["r3", "r0", "r2", "r1"]

    await mlflow.ok("POST", "runs/delete", {"run_id": ids[0]})
    assert "r0" not in await names()
    assert await names(run_view_type="DELETED_ONLY") == ["r0"]
    wrong_type = await mlflow.post(
        "runs/search", {"experiment_ids": [experiment], "filter": "metrics.acc > 'high'"}
    )
    assert_error(wrong_type, 400, "INVALID_PARAMETER_VALUE")


async def test_each_logging_call_leaves_one_audit_entry_naming_its_run(
    platform_api: Api, mlflow: Mlflow
) -> None:
    """Logging is audited in the write's own transaction, with the run and what was logged
    (the middleware's fallback would name only the project, in a second transaction)."""
    run_id = (await mlflow.run(await mlflow.experiment("audited")))["info"]["run_id"]
    points = [{"key": "loss", "value": v, "timestamp": 1, "step": i} for i, v in enumerate([3, 2])]
    body = {"run_id": run_id, "metrics": points, "params": [{"key": "lr", "value": "0.1"}]}
    await mlflow.ok("POST", "runs/log-batch", body)
    metric = {"run_id": run_id, "key": "acc", "value": 0.5, "timestamp": 2, "step": 7}
    await mlflow.ok("POST", "runs/log-metric", metric)
    await mlflow.ok("POST", "runs/set-tag", {"run_id": run_id, "key": "team", "value": "ds"})
    await mlflow.ok("POST", "runs/delete-tag", {"run_id": run_id, "key": "team"})
    await mlflow.ok("POST", "runs/log-parameter", {"run_id": run_id, "key": "d", "value": "4"})

    admin = await platform_api.admin_token()
    listed = await platform_api.client.get(
        "/api/v1/audit", headers=auth(admin), params={"limit": 200}
    )
    assert listed.status_code == 200, listed.text
    entries = [e for e in listed.json()["items"] if e["resource_id"] == str(uuid.UUID(run_id))]
    assert sorted(e["action"] for e in entries) == [
        "runs.create",
        "runs.delete_tag",
        "runs.log_batch",
        "runs.log_metric",
        "runs.log_param",
        "runs.set_tag",
    ]
    by_action = {e["action"]: e for e in entries}
    assert by_action["runs.log_batch"]["details"]["metrics"] == 2
    assert by_action["runs.log_batch"]["details"]["params"] == 1
    assert by_action["runs.log_metric"]["details"]["step"] == 7
    assert {e["service"] for e in entries} == {"tracking"}
    # No second, generic entry for the same requests.
    generic = [e for e in listed.json()["items"] if e["action"].startswith("tracking.runs.")]
    assert generic == []
