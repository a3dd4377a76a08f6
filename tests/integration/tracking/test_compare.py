"""Armillary's own API over runs: list and compare an experiment's runs sorted and filtered by
metric or param, a run with its job link, a metric's history, the parallel-coordinates export;
and the job link itself, taken from the token's claims and never from the client's tags."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import Api, auth, client_for
from tests.integration.tracking.support import Mlflow, assert_error

from armillary.app import create_app
from armillary.kit.settings import Settings


@dataclass
class Scene:
    app: FastAPI
    api: Api
    mlflow: Mlflow
    user: dict[str, Any]
    project: dict[str, Any]

    @property
    def base(self) -> str:
        return f"/api/v1/projects/{self.project['slug']}"

    async def get(self, path: str, token: str | None = None, **params: Any) -> httpx.Response:
        return await self.api.client.get(
            f"{self.base}{path}", params=params, headers=auth(token or self.user["token"])
        )

    async def ok(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self.get(path, **params)
        assert response.status_code == 200, response.text
        return dict(response.json())


@pytest.fixture
async def scene(backend_settings: Settings) -> AsyncIterator[Scene]:
    app = create_app(backend_settings, configure_logs=False)
    async with LifespanManager(app, startup_timeout=60), client_for(app) as client:
        api = Api(client)
        admin = await api.admin_token()
        user = await api.create_user(admin, "data_scientist")
        project = await api.create_project(user["token"])
        yield Scene(app, api, Mlflow(client, project["slug"], user["token"]), user, project)


# (name, params, the accuracy at each of three steps, loss)
RUNS = [
    ("rf-shallow", {"model": "rf", "depth": "2"}, [0.70, 0.75, 0.80], 0.5),
    ("rf-deep", {"model": "rf", "depth": "8"}, [0.80, 0.88, 0.93], 0.2),
    ("logreg", {"model": "logreg", "depth": "0"}, [0.60, 0.65, 0.85], 0.4),
]


async def _study(scene: Scene) -> dict[str, str]:
    experiment = await scene.mlflow.experiment("hpo")
    ids = {}
    for start, (name, params, accuracy, loss) in enumerate(RUNS):
        run = await scene.mlflow.run(experiment, run_name=name, start_time=1_000 + start)
        run_id = run["info"]["run_id"]
        metrics = [
            {"key": "acc", "value": value, "timestamp": 5, "step": step}
            for step, value in enumerate(accuracy)
        ]
        metrics.append({"key": "loss", "value": loss, "timestamp": 5, "step": 0})
        body = {
            "run_id": run_id,
            "params": [{"key": k, "value": v} for k, v in params.items()],
            "metrics": metrics,
        }
        await scene.mlflow.ok("POST", "runs/log-batch", body)
        ids[name] = run_id
    return ids


async def test_runs_are_listed_sorted_and_filtered_by_metric_and_param(scene: Scene) -> None:
    ids = await _study(scene)
    newest_first = await scene.ok("/experiments/hpo/runs")
    assert [r["name"] for r in newest_first["items"]] == ["logreg", "rf-deep", "rf-shallow"]
    assert newest_first["experiment"]["name"] == "hpo"
    assert newest_first["next_offset"] is None
    first = newest_first["items"][2]
    assert first["id"] == ids["rf-shallow"]
    assert first["params"] == {"depth": "2", "model": "rf"}
    assert first["metrics"] == {"acc": 0.80, "loss": 0.5}
    assert first["job_id"] is None
    assert first["task"] is None
    assert first["status"] == "RUNNING"

    by_accuracy = await scene.ok("/experiments/hpo/runs", order_by="metrics.acc DESC")
    assert [r["name"] for r in by_accuracy["items"]] == ["rf-deep", "logreg", "rf-shallow"]
    by_loss = await scene.ok("/experiments/hpo/runs", order_by=["params.model", "metrics.loss"])
    assert [r["name"] for r in by_loss["items"]] == ["logreg", "rf-deep", "rf-shallow"]
    good_forests = await scene.ok(
        "/experiments/hpo/runs", filter="metrics.acc > 0.82 and params.model = 'rf'"
    )
    assert [r["name"] for r in good_forests["items"]] == ["rf-deep"]

    paged = await scene.ok("/experiments/hpo/runs", order_by="metrics.acc DESC", limit=2, offset=0)
    assert [r["name"] for r in paged["items"]] == ["rf-deep", "logreg"]
    assert paged["next_offset"] == 2
    rest = await scene.ok("/experiments/hpo/runs", order_by="metrics.acc DESC", limit=2, offset=2)
    assert [r["name"] for r in rest["items"]] == ["rf-shallow"]

    # The experiment by id answers the same.
    experiment_id = newest_first["experiment"]["id"]
    by_id = await scene.ok(f"/experiments/{experiment_id}/runs")
    assert [r["id"] for r in by_id["items"]] == [r["id"] for r in newest_first["items"]]


async def test_a_run_its_metric_history_and_the_export(scene: Scene) -> None:
    ids = await _study(scene)
    run = await scene.ok(f"/runs/{ids['rf-deep']}")
    assert run["name"] == "rf-deep"
    assert run["metrics"]["acc"] == 0.93
    assert run["tags"]["mlflow.runName"] == "rf-deep"

    history = await scene.ok(f"/runs/{ids['rf-deep']}/metrics/acc/history")
    assert [(p["step"], p["value"]) for p in history["points"]] == [
        (0, 0.80),
        (1, 0.88),
        (2, 0.93),
    ]
    assert history["next_after"] is None
    first_page = await scene.ok(f"/runs/{ids['rf-deep']}/metrics/acc/history", limit=2)
    assert [p["step"] for p in first_page["points"]] == [0, 1]
    second = await scene.ok(
        f"/runs/{ids['rf-deep']}/metrics/acc/history", after=first_page["next_after"]
    )
    assert [p["step"] for p in second["points"]] == [2]

    export = await scene.ok(
        "/experiments/hpo/runs/export",
        params=["model", "depth"],
        metrics=["acc"],
        order_by="metrics.acc DESC",
    )
    assert export["columns"] == [
        "run_id",
        "run_name",
        "params.model",
        "params.depth",
        "metrics.acc",
    ]
    assert export["rows"] == [
        [ids["rf-deep"], "rf-deep", "rf", "8", 0.93],
        [ids["logreg"], "logreg", "logreg", "0", 0.85],
        [ids["rf-shallow"], "rf-shallow", "rf", "2", 0.80],
    ]
    assert export["truncated"] is False
    # No columns chosen: every param and metric the runs have; a missing value is null.
    everything = await scene.ok("/experiments/hpo/runs/export", filter="params.model = 'rf'")
    assert everything["columns"] == [
        "run_id",
        "run_name",
        "params.depth",
        "params.model",
        "metrics.acc",
        "metrics.loss",
    ]
    assert len(everything["rows"]) == 2
    missing = await scene.ok("/experiments/hpo/runs/export", metrics=["f1"], limit=1)
    assert missing["columns"][-1] == "metrics.f1"
    assert missing["rows"][0][-1] is None
    assert missing["truncated"] is True


async def test_bad_queries_and_other_projects_are_refused(scene: Scene) -> None:
    ids = await _study(scene)
    bad = await scene.get("/experiments/hpo/runs", filter="metrics.acc > 'high'")
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "compared with a number" in bad.json()["detail"]
    assert (await scene.get("/experiments/hpo/runs", filter="acc >> 1")).status_code == 400
    assert (await scene.get("/experiments/nope/runs")).status_code == 404
    assert (await scene.get(f"/runs/{uuid.uuid4().hex}")).status_code == 404
    assert (await scene.get("/runs/not-an-id")).status_code == 404

    # Another data scientist: not a member, so the project, its runs and experiments are 404.
    admin = await scene.api.admin_token()
    stranger = await scene.api.create_user(admin, "data_scientist")
    for path in (f"/runs/{ids['logreg']}", "/experiments/hpo/runs", "/experiments/hpo/runs/export"):
        assert (await scene.get(path, token=stranger["token"])).status_code == 404
    # Their own project does not reach this one's runs by id either.
    theirs = await scene.api.create_project(stranger["token"])
    response = await scene.api.client.get(
        f"/api/v1/projects/{theirs['slug']}/runs/{ids['logreg']}",
        headers=auth(stranger["token"]),
    )
    assert response.status_code == 404


async def test_a_job_tokens_run_is_linked_to_its_job_and_task(scene: Scene) -> None:
    job_id = uuid.uuid4()
    issued = await scene.app.state.runtime.require_access().directory.issue_job_token(
        user_id=uuid.UUID(str(scene.user["id"])),
        project_id=uuid.UUID(str(scene.project["id"])),
        job_id=job_id,
        ttl_seconds=300,
        task="train",
        attempt=1,
    )
    as_job = scene.mlflow.as_user(issued.token)
    experiment = await scene.mlflow.experiment("linked")
    run = await as_job.run(experiment, run_name="from-a-task")
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["armillary.job_id"] == str(job_id)
    assert tags["armillary.task"] == "train"
    shown = await scene.ok(f"/runs/{run['info']['run_id']}")
    assert (shown["job_id"], shown["task"]) == (str(job_id), "train")
    # Searchable like any tag.
    by_tag = f"tags.`armillary.job_id` = '{job_id}'"
    found = await scene.ok("/experiments/linked/runs", filter=by_tag)
    assert [r["id"] for r in found["items"]] == [run["info"]["run_id"]]


async def test_the_job_link_cannot_be_claimed_or_changed_by_a_client(scene: Scene) -> None:
    experiment = await scene.mlflow.experiment("spoof")
    claimed = await scene.mlflow.post(
        "runs/create",
        {
            "experiment_id": experiment,
            "tags": [{"key": "armillary.job_id", "value": str(uuid.uuid4())}],
        },
    )
    assert_error(claimed, 400, "INVALID_PARAMETER_VALUE")
    run = await scene.mlflow.run(experiment)
    run_id = run["info"]["run_id"]
    for endpoint, body in (
        ("runs/set-tag", {"run_id": run_id, "key": "armillary.task", "value": "train"}),
        (
            "runs/log-batch",
            {"run_id": run_id, "tags": [{"key": "armillary.job_id", "value": "x"}]},
        ),
        ("runs/delete-tag", {"run_id": run_id, "key": "armillary.job_id"}),
    ):
        assert_error(await scene.mlflow.post(endpoint, body), 400, "INVALID_PARAMETER_VALUE")
    shown = await scene.ok(f"/runs/{run_id}")
    assert shown["job_id"] is None
    assert "armillary.task" not in shown["tags"]
