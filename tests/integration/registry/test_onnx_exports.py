"""A version registered with its ONNX export ``pending`` (ADR 0018): only the export job the
registry asked for may finish it, ``ready`` with the ``model.onnx`` of one of its tasks (checked
like any model file) or ``failed`` with a reason; an export job that ends without saying so
leaves the version ``failed``."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from tests.integration.registry.models_for_tests import SIGNATURE, json_bytes, onnx_bytes
from tests.integration.registry.support import (
    Scene,
    assert_problem,
    register,
    skops_bytes,
    version_body,
    with_datasets,
)

from armillary.contracts.registry import ModelVersionOnnxChanged, OnnxExportRequested
from armillary.kit.events import OutboxEvent
from armillary.registry.versions import onnx

FILES = {
    "model.skops": skops_bytes(),
    "signature.json": json_bytes(SIGNATURE),
    "environment.json": json_bytes({"python": "3.11"}),
}
ARTIFACTS = ["model.skops", "signature.json", "environment.json"]


async def _pending(scene: Scene) -> dict[str, Any]:
    await with_datasets(scene)
    body = {**version_body(artifacts=ARTIFACTS), "onnx": {"status": "pending"}}
    return await register(scene, body=body, files=FILES)


async def _events(scene: Scene, kind: str) -> list[dict[str, Any]]:
    async with scene.platform.app.state.runtime.db.read_only() as session:
        rows = await session.scalars(select(OutboxEvent).where(OutboxEvent.type == kind))
        return [dict(row.payload) for row in rows]


async def _export_job(scene: Scene, job_id: uuid.UUID, onnx_file: bytes | None) -> str:
    """The export job's record (its ``export`` task's artifacts) and a token of it."""
    artifacts = {}
    if onnx_file is not None:
        artifacts["model.onnx"] = await scene.put_job_artifact(
            job_id, "export", "model.onnx", onnx_file
        )
    scene.platform.jobs.jobs[str(job_id)] = {
        "id": str(job_id),
        "status": "running",
        "tasks": [
            {"name": "export", "type": "onnx_export", "needs": [], "artifacts": artifacts},
            {"name": "attach", "type": "attach_onnx", "needs": ["export"]},
        ],
    }
    return await scene.job_token(job_id)


async def test_a_pending_version_asks_for_its_export_job_and_it_attaches_model_onnx(
    scene: Scene,
) -> None:
    version = await _pending(scene)
    assert version["onnx"]["status"] == "pending"
    assert "model.onnx" not in version["artifacts"]
    job_id = uuid.UUID(version["onnx"]["job_id"])
    [requested] = await _events(scene, OnnxExportRequested.TYPE)
    assert requested["export_job_id"] == str(job_id)
    assert requested["source_task"] == "train"
    assert requested["version"] == version["version"]

    url = f"{scene.model_base}/versions/{version['version']}/onnx"
    # Another job (here: a fresh training job's token) may not finish it.
    other = await _export_job(scene, uuid.uuid4(), onnx_bytes())
    refused = await scene.client.put(
        url,
        json={"status": "ready", "task": "export"},
        headers={"Authorization": f"Bearer {other}"},
    )
    assert_problem(refused, 403)
    # Nor may the user.
    refused = await scene.client.put(
        url,
        json={"status": "ready", "task": "export"},
        headers={"Authorization": f"Bearer {scene.token}"},
    )
    assert_problem(refused, 403)

    token = await _export_job(scene, job_id, onnx_bytes())
    headers = {"Authorization": f"Bearer {token}"}
    done = await scene.client.put(url, json={"status": "ready", "task": "export"}, headers=headers)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["onnx"]["status"] == "ready"
    assert "model.onnx" in body["artifacts"]
    [changed] = await _events(scene, ModelVersionOnnxChanged.TYPE)
    assert changed["status"] == "ready"
    assert changed["model_version_id"] == version["id"]
    # A retry of the same outcome is answered; another outcome is a conflict.
    again = await scene.client.put(url, json={"status": "ready", "task": "export"}, headers=headers)
    assert again.status_code == 200, again.text
    conflict = await scene.client.put(
        url, json={"status": "failed", "reason": "no"}, headers=headers
    )
    assert_problem(conflict, 409)
    download = await scene.client.get(
        f"{scene.model_base}/versions/{version['version']}/artifacts/model.onnx",
        headers={"Authorization": f"Bearer {scene.token}"},
    )
    assert download.status_code == 200
    assert download.content == onnx_bytes()


async def test_an_export_that_failed_is_recorded_with_its_reason(scene: Scene) -> None:
    version = await _pending(scene)
    token = await _export_job(scene, uuid.UUID(version["onnx"]["job_id"]), None)
    url = f"{scene.model_base}/versions/{version['version']}/onnx"
    reason = "parity check failed: the ONNX export predicts differently on 3 of 120 rows"
    done = await scene.client.put(
        url,
        json={"status": "failed", "reason": reason},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["onnx"]["status"] == "failed"
    assert done.json()["onnx"]["reason"] == reason
    assert "model.onnx" not in done.json()["artifacts"]


async def test_a_file_that_is_not_onnx_is_refused_and_the_export_stays_pending(
    scene: Scene,
) -> None:
    version = await _pending(scene)
    token = await _export_job(scene, uuid.UUID(version["onnx"]["job_id"]), b"\x80\x04pickle")
    url = f"{scene.model_base}/versions/{version['version']}/onnx"
    refused = await scene.client.put(
        url,
        json={"status": "ready", "task": "export"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status_code in (415, 422), refused.text
    assert_problem(refused, refused.status_code)
    still = await scene.client.get(
        f"{scene.model_base}/versions/{version['version']}",
        headers={"Authorization": f"Bearer {scene.token}"},
    )
    assert still.json()["onnx"]["status"] == "pending"


async def test_an_export_job_that_ends_without_attaching_leaves_the_version_failed(
    scene: Scene,
) -> None:
    version = await _pending(scene)
    job_id = uuid.UUID(version["onnx"]["job_id"])
    async with scene.platform.app.state.runtime.db.unit_of_work() as session:
        assert await onnx.export_job_ended(session, job_id, "failed")
    async with scene.platform.app.state.runtime.db.unit_of_work() as session:
        assert not await onnx.export_job_ended(session, job_id, "failed")
    found = await scene.client.get(
        f"{scene.model_base}/versions/{version['version']}",
        headers={"Authorization": f"Bearer {scene.token}"},
    )
    state = found.json()["onnx"]
    assert state["status"] == "failed"
    assert (
        f"the export job failed before it attached model.onnx (see job {job_id})"
        == (state["reason"])
    )


async def test_a_version_registered_with_model_onnx_is_ready_at_once(scene: Scene) -> None:
    await with_datasets(scene)
    version = await register(scene)
    assert version["onnx"]["status"] == "ready"
    assert version["onnx"]["job_id"] is None
    assert await _events(scene, OnnxExportRequested.TYPE) == []
