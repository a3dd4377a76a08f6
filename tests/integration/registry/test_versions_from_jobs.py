"""A job registers a version from its own artifacts: copied with size and SHA-256, model files
checked, lineage from the job (workflow version, dataset versions with SHA-256), event and
audit entry in the same transaction; and every way that must be refused."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from sqlalchemy import text
from tests.conftest import auth
from tests.integration.registry.models_for_tests import (
    ENVIRONMENT,
    SIGNATURE,
    marker_pickle,
    skops_referencing,
)
from tests.integration.registry.support import (
    Scene,
    assert_problem,
    default_files,
    register,
    sha256,
    training_job,
    version_body,
    with_datasets,
)

from armillary.kit.storage import model_artifact_key


async def _outbox(scene: Scene, event_type: str) -> list[dict[str, object]]:
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT payload FROM outbox_events WHERE type = :t ORDER BY created_at"),
            {"t": event_type},
        )
        return [dict(r[0]) for r in rows]


async def _version_rows(scene: Scene) -> int:
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        return int(await session.scalar(text("SELECT count(*) FROM registry_model_versions")) or 0)


async def test_a_job_registers_a_version_from_its_artifacts(scene: Scene) -> None:
    datasets = await with_datasets(scene)
    files = default_files()
    job_id, token = await training_job(scene, files=files)

    reference = {
        "rows": 4,
        "features": {"x": {"kind": "numeric", "edges": [0.5], "fractions": [0.5, 0.5]}},
    }
    response = await scene.client.post(
        f"{scene.model_base}/versions",
        json={**version_body(), "drift_reference": reference},
        headers=auth(token),
    )

    assert response.status_code == 201, response.text
    version = response.json()
    assert version["version"] == 1
    # The drift reference is stored with the version (ADR 0032), for serving to resolve.
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        stored = await session.scalar(text("SELECT drift_reference FROM registry_model_versions"))
    stored = json.loads(stored) if isinstance(stored, str) else stored
    assert stored == {
        "rows": 4,
        "features": {
            "x": {"kind": "numeric", "edges": [0.5], "fractions": [0.5, 0.5]},
        },
    }
    assert response.headers["location"].endswith(f"/models/{scene.model}/versions/1")
    assert version["model"] == scene.model
    assert version["source"] == "job"
    assert version["format"] == "skops"
    assert version["metrics"] == {"f1": 0.8, "accuracy": 0.9}
    assert version["environment"] == ENVIRONMENT  # read from environment.json
    assert version["signature"] == SIGNATURE
    assert version["artifacts"] == {
        name: {"size_bytes": len(data), "sha256": sha256(data)} for name, data in files.items()
    }
    # The copies live under the model's keys, byte for byte.
    store = scene.platform.registry.store
    project_id = uuid.UUID(scene.project["id"])
    model_id = uuid.UUID(
        (await scene.client.get(scene.model_base, headers=auth(token))).json()["id"]
    )
    version_id = uuid.UUID(version["id"])
    for name, data in files.items():
        key = model_artifact_key(project_id, model_id, version_id, name)
        assert await store.get_bytes(key) == data
        download = await scene.client.get(
            f"{scene.model_base}/versions/1/artifacts/{name}", headers=auth(scene.token)
        )
        assert download.status_code == 200
        assert download.content == data
        assert download.headers["x-content-sha256"] == sha256(data)
    # Lineage from the job: its workflow version, and only the datasets upstream of train
    # (training) and of evaluate (evaluation); never the unrelated ingest.
    lineage = version["lineage"]
    assert lineage["job_id"] == str(job_id)
    assert lineage["task"] == "train"
    assert lineage["evaluation_task"] == "evaluate"
    assert lineage["workflow"] == {
        "id": "7d3c2f1e-0000-4000-8000-000000000001",
        "name": "train-churn",
        "version": 3,
    }
    used = {(d["dataset"], d["version"], d["role"], d["sha256"]) for d in lineage["datasets"]}
    assert used == {
        ("iris", 1, "training", datasets["iris"]["sha256"]),
        ("iris-test", 1, "evaluation", datasets["iris-test"]["sha256"]),
    }
    assert scene.platform.jobs.calls == [str(job_id)]
    # The event, for the data service to hold those dataset versions.
    events = await _outbox(scene, "registry.model_version_registered")
    assert len(events) == 1
    assert events[0]["version"] == 1
    assert {d["dataset"] for d in events[0]["datasets"]} == {"iris", "iris-test"}  # type: ignore[union-attr]
    audit = await _outbox(scene, "audit.entry")
    actions = [e["action"] for e in audit]
    assert "models.version_create" in actions
    assert "models.artifact_download" in actions


async def test_versions_are_numbered_in_order(scene: Scene) -> None:
    await with_datasets(scene)
    first = await register(scene)
    second = await register(scene)
    assert (first["version"], second["version"]) == (1, 2)
    detail = (await scene.client.get(scene.model_base, headers=auth(scene.token))).json()
    assert detail["latest_version"] == 2
    assert detail["latest"]["version"] == 2


async def test_a_user_token_cannot_register_from_a_job(scene: Scene) -> None:
    await with_datasets(scene)
    await training_job(scene)
    response = await scene.client.post(
        f"{scene.model_base}/versions", json=version_body(), headers=auth(scene.token)
    )
    body = assert_problem(response, 403)
    assert "upload" in body["detail"]


async def test_an_untrusted_skops_from_a_job_is_refused_and_nothing_is_kept(
    scene: Scene,
) -> None:
    await with_datasets(scene)
    files = {**default_files(), "model.skops": skops_referencing(eval)}
    _, token = await training_job(scene, files=files)
    response = await scene.client.post(
        f"{scene.model_base}/versions", json=version_body(), headers=auth(token)
    )
    body = assert_problem(response, 422)
    assert "builtins.eval" in body["detail"]
    assert await _version_rows(scene) == 0
    store = scene.platform.registry.store
    assert await store.list_keys(f"projects/{scene.project['id']}/models") == []


async def test_a_pickle_named_model_skops_is_refused(scene: Scene, tmp_path: Path) -> None:
    await with_datasets(scene)
    marker = tmp_path / "unpickled"
    files = {**default_files(), "model.skops": marker_pickle(marker)}
    _, token = await training_job(scene, files=files)
    response = await scene.client.post(
        f"{scene.model_base}/versions", json=version_body(), headers=auth(token)
    )
    assert_problem(response, 422)
    assert not os.path.exists(marker)


async def test_artifact_names_are_allow_listed_and_a_model_file_is_required(
    scene: Scene,
) -> None:
    await with_datasets(scene)
    _, token = await training_job(scene)
    url = f"{scene.model_base}/versions"
    for artifacts in (["model.pkl"], ["../model.skops"], ["signature.json"]):
        response = await scene.client.post(
            url, json=version_body(artifacts=artifacts), headers=auth(token)
        )
        assert_problem(response, 422)
    missing = {k: v for k, v in default_files().items() if k != "model.onnx"}
    _, token = await training_job(scene, files=missing)
    response = await scene.client.post(url, json=version_body(), headers=auth(token))
    body = assert_problem(response, 422)
    assert "model.onnx" in body["detail"]
    assert await _version_rows(scene) == 0


async def test_the_files_of_the_attempt_the_task_run_recorded_are_registered(
    scene: Scene,
) -> None:
    """A zombie attempt (lease lost, still running) writes beside the attempt that succeeded,
    never over it; the registry copies what the task run recorded, not a recomputed key."""
    await with_datasets(scene)
    job_id, token = await training_job(scene)
    await scene.put_job_artifact(job_id, "train", "model.skops", b"zombie bytes", attempt=2)
    response = await scene.client.post(
        f"{scene.model_base}/versions", json=version_body(), headers=auth(token)
    )
    assert response.status_code == 201, response.text
    expected = default_files()["model.skops"]
    assert response.json()["artifacts"]["model.skops"]["sha256"] == sha256(expected)


async def test_a_recorded_key_outside_the_project_is_refused(scene: Scene) -> None:
    await with_datasets(scene)
    job_id, token = await training_job(scene)
    train = next(t for t in scene.platform.jobs.jobs[str(job_id)]["tasks"] if t["name"] == "train")
    foreign = f"projects/{uuid.uuid4()}/jobs/{job_id}/train/attempt-1/model.skops"
    for key in (foreign, "../../etc/passwd", 7):
        train["artifacts"]["model.skops"] = key
        response = await scene.client.post(
            f"{scene.model_base}/versions", json=version_body(), headers=auth(token)
        )
        assert "model.skops" in assert_problem(response, 422)["detail"]
    assert await _version_rows(scene) == 0


async def test_an_unknown_dataset_version_refuses_the_registration(scene: Scene) -> None:
    await with_datasets(scene)
    _, token = await training_job(scene, train_reads=("iris", 9))
    response = await scene.client.post(
        f"{scene.model_base}/versions", json=version_body(), headers=auth(token)
    )
    body = assert_problem(response, 409)
    assert "'iris' version 9" in body["detail"]
    assert await _version_rows(scene) == 0


async def test_an_unknown_job_or_task_is_refused(scene: Scene) -> None:
    await with_datasets(scene)
    _, token = await training_job(scene)
    body = version_body()
    body["source"]["task"] = "nope"
    response = await scene.client.post(
        f"{scene.model_base}/versions", json=body, headers=auth(token)
    )
    assert "'nope'" in assert_problem(response, 422)["detail"]
    scene.platform.jobs.jobs.clear()
    response = await scene.client.post(
        f"{scene.model_base}/versions", json=version_body(), headers=auth(token)
    )
    assert_problem(response, 422)


async def test_a_job_token_cannot_register_in_another_project(scene: Scene) -> None:
    await with_datasets(scene)
    _, token = await training_job(scene)
    other = await scene.platform.api.create_project(scene.token)
    created = await scene.client.post(
        f"/api/v1/projects/{other['slug']}/models", json={"name": "m"}, headers=auth(scene.token)
    )
    assert created.status_code == 201
    response = await scene.client.post(
        f"/api/v1/projects/{other['slug']}/models/m/versions",
        json=version_body(),
        headers=auth(token),
    )
    assert_problem(response, 404)
