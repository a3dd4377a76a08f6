"""A version from a file an MLflow run logged (``versions/from-run``, the tracking service's
call): the key is the caller's project's run prefix, so no path or run id reaches another
project's files or leaves the run's artifacts, and the file is checked before it is stored."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from tests.conftest import auth
from tests.integration.registry.models_for_tests import marker_pickle, skops_bytes
from tests.integration.registry.support import Scene, assert_problem

from armillary.kit import run_job_link
from armillary.kit.storage.keys import run_artifact_key


def _body(run_id: uuid.UUID, path: str = "model/model.skops") -> dict[str, Any]:
    return {
        "source": {
            "run_id": str(run_id),
            "experiment_id": str(uuid.uuid4()),
            "path": path,
            "uri": f"runs:/{run_id.hex}/model",
            "run_name": "lr",
        },
        "format": "skops",
        "metrics": {"accuracy": 0.9},
        "params": {"C": "1.0"},
    }


async def _from_run(
    scene: Scene, body: dict[str, Any], project: str | None = None
) -> httpx.Response:
    slug = project or scene.project["slug"]
    base = f"/api/v1/projects/{slug}/models/{scene.model}"
    return await scene.client.post(
        f"{base}/versions/from-run", json=body, headers=auth(scene.token)
    )


async def _put(scene: Scene, project_id: str, run_id: uuid.UUID, path: str, data: bytes) -> None:
    key = run_artifact_key(uuid.UUID(project_id), run_id, path)
    await scene.platform.registry.store.put_bytes(key, data)


async def test_a_runs_skops_file_becomes_a_version_with_its_lineage(scene: Scene) -> None:
    run_id = uuid.uuid4()
    await _put(scene, scene.project["id"], run_id, "model/model.skops", skops_bytes())
    response = await _from_run(scene, _body(run_id))
    assert response.status_code == 201, response.text
    version = response.json()
    assert (version["source"], version["format"], version["version"]) == ("mlflow", "skops", 1)
    assert version["metrics"] == {"accuracy": 0.9}
    assert version["lineage"]["run_id"] == run_id.hex
    assert version["lineage"]["mlflow_source"] == f"runs:/{run_id.hex}/model"
    assert set(version["artifacts"]) == {"model.skops"}


async def test_paths_and_runs_outside_the_callers_run_are_refused(
    scene: Scene, tmp_path: Path
) -> None:
    run_id = uuid.uuid4()
    await _put(scene, scene.project["id"], run_id, "model/model.skops", skops_bytes())
    for path in ("model/../../jobs/x/model.skops", "/model/model.skops", "model//model.skops"):
        assert_problem(await _from_run(scene, _body(run_id, path)), 422)
    # Another run, or the same run id under another project: not there.
    assert_problem(await _from_run(scene, _body(uuid.uuid4())), 422)
    other = await scene.platform.client.post(
        "/api/v1/projects", json={"slug": "other-p", "name": "Other"}, headers=auth(scene.token)
    )
    assert other.status_code == 201, other.text
    await scene.client.post(
        "/api/v1/projects/other-p/models", json={"name": scene.model}, headers=auth(scene.token)
    )
    assert_problem(await _from_run(scene, _body(run_id), project="other-p"), 422)
    # A pickle under the skops name is refused unread.
    marker = tmp_path / "unpickled"
    await _put(scene, scene.project["id"], run_id, "bad/model.skops", marker_pickle(marker))
    refused = await _from_run(scene, _body(run_id, "bad/model.skops"))
    assert refused.status_code in (415, 422), refused.text
    assert not marker.exists()
    listed = await scene.client.get(f"{scene.model_base}/versions", headers=auth(scene.token))
    assert listed.json()["total"] == 0


async def test_a_job_link_the_caller_cannot_see_is_refused(scene: Scene) -> None:
    run_id = uuid.uuid4()
    await _put(scene, scene.project["id"], run_id, "model/model.skops", skops_bytes())
    body = _body(run_id)
    job_id = uuid.uuid4()
    body["source"]["job"] = {
        "job_id": str(job_id),
        "task": "fit",
        "seal": _seal(scene, run_id, job_id, "fit"),
    }
    refused = await _from_run(scene, body)
    assert_problem(refused, 422)
    assert "job that started the run" in refused.json()["detail"]
    listed = await scene.client.get(f"{scene.model_base}/versions", headers=auth(scene.token))
    assert listed.json()["total"] == 0


async def test_a_job_link_the_tracking_service_did_not_seal_is_refused(scene: Scene) -> None:
    """A caller of the public route cannot name a job of its own choosing as the run's: the
    link needs the tracking service's seal, for this run, job and task, in this project."""
    run_id = uuid.uuid4()
    await _put(scene, scene.project["id"], run_id, "model/model.skops", skops_bytes())
    job_id = uuid.uuid4()
    other_run = uuid.uuid4()
    forged = [
        {"job_id": str(job_id), "task": "fit"},  # no seal
        {"job_id": str(job_id), "task": "fit", "seal": "0" * 64},
        # A real seal, but of another run's link or another task's.
        {"job_id": str(job_id), "task": "fit", "seal": _seal(scene, other_run, job_id, "fit")},
        {"job_id": str(job_id), "task": "fit", "seal": _seal(scene, run_id, job_id, "other")},
    ]
    for link in forged:
        body = _body(run_id)
        body["source"]["job"] = link
        refused = await _from_run(scene, body)
        assert_problem(refused, 422)
    assert "not made by the tracking service" in refused.json()["detail"]
    listed = await scene.client.get(f"{scene.model_base}/versions", headers=auth(scene.token))
    assert listed.json()["total"] == 0


def _seal(scene: Scene, run_id: uuid.UUID, job_id: uuid.UUID, task: str) -> str:
    secret = scene.platform.registry.runtime.settings.resolved_secret_key()
    return run_job_link.seal(secret, uuid.UUID(scene.project["id"]), run_id, job_id, task)
