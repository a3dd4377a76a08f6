"""Users upload model files: ONNX and skops are accepted by their content; pickles, joblib
dumps, zips of pickles and skops files that name untrusted types are refused with nothing
stored, and nothing is ever unpickled."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from tests.conftest import auth
from tests.integration.registry.models_for_tests import (
    marker_pickle,
    onnx_bytes,
    onnx_with_custom_domain,
    skops_bytes,
    skops_referencing,
    zip_of_pickle,
)
from tests.integration.registry.support import Scene, assert_problem, sha256, training_job


async def _upload(
    scene: Scene, data: bytes, filename: str = "model.bin", token: str | None = None, **fields: str
) -> httpx.Response:
    return await scene.client.post(
        f"{scene.model_base}/versions/upload",
        files={"file": (filename, data, "application/octet-stream")},
        data=fields,
        headers=auth(token or scene.token),
    )


async def _nothing_stored(scene: Scene) -> None:
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        rows = await session.scalar(text("SELECT count(*) FROM registry_model_versions"))
    assert rows == 0
    prefix = f"projects/{scene.project['id']}/models"
    assert await scene.platform.registry.store.list_keys(prefix) == []


async def test_an_onnx_file_is_accepted(scene: Scene) -> None:
    data = onnx_bytes()
    response = await _upload(
        scene,
        data,
        "exported.bin",  # the content decides, not the name
        description="hand-made",
        tags='{"stage": "dev"}',
        metrics='{"f1": 0.5}',
        signature='{"inputs": []}',
    )
    assert response.status_code == 201, response.text
    version: dict[str, Any] = response.json()
    assert (version["format"], version["source"], version["version"]) == ("onnx", "upload", 1)
    assert version["artifacts"] == {"model.onnx": {"size_bytes": len(data), "sha256": sha256(data)}}
    assert (version["description"], version["tags"], version["metrics"]) == (
        "hand-made",
        {"stage": "dev"},
        {"f1": 0.5},
    )
    download = await scene.client.get(
        f"{scene.model_base}/versions/1/artifacts/model.onnx", headers=auth(scene.token)
    )
    assert download.content == data


async def test_a_skops_file_is_accepted(scene: Scene) -> None:
    response = await _upload(scene, skops_bytes(), "model.skops")
    assert response.status_code == 201, response.text
    assert list(response.json()["artifacts"]) == ["model.skops"]
    assert response.json()["format"] == "skops"


async def test_a_pickle_is_refused_and_never_unpickled(scene: Scene, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    for name, data in (
        ("model.pkl", marker_pickle(marker)),
        ("model.onnx", marker_pickle(marker)),  # a lying name changes nothing
        ("model.skops", zip_of_pickle(marker)),
        ("model.joblib", b"\x78\x9c" + marker_pickle(marker)),
    ):
        response = await _upload(scene, data, name)
        body = assert_problem(response, 415)
        assert "ONNX" in body["detail"] or "skops" in body["detail"], body
    assert not os.path.exists(marker)
    await _nothing_stored(scene)


async def test_skops_files_naming_dangerous_callables_are_refused(scene: Scene) -> None:
    for function, name in ((eval, "builtins.eval"), (os.system, f"{os.name}.system")):
        response = await _upload(scene, skops_referencing(function), "model.skops")
        body = assert_problem(response, 422)
        assert name in body["detail"]
        assert name in body["untrusted_types"]
    await _nothing_stored(scene)


async def test_onnx_with_custom_operators_is_refused(scene: Scene) -> None:
    body = assert_problem(await _upload(scene, onnx_with_custom_domain()), 422)
    assert "com.example.evil" in body["detail"]
    await _nothing_stored(scene)


async def test_bad_uploads_are_refused(scene: Scene) -> None:
    assert_problem(await _upload(scene, b"not a model at all"), 415)
    assert_problem(await _upload(scene, onnx_bytes(), tags="[1]"), 422)
    assert_problem(await _upload(scene, onnx_bytes(), metrics='{"f1": "high"}'), 422)
    assert_problem(await _upload(scene, onnx_bytes(), owner="me"), 422)
    not_multipart = await scene.client.post(
        f"{scene.model_base}/versions/upload", content=onnx_bytes(), headers=auth(scene.token)
    )
    assert_problem(not_multipart, 415)
    scene.platform.registry.settings.max_upload_bytes = 100
    assert_problem(await _upload(scene, onnx_bytes()), 413)
    await _nothing_stored(scene)


async def test_only_editors_upload_and_jobs_register_instead(scene: Scene) -> None:
    viewer = await scene.member("viewer")
    assert_problem(await _upload(scene, onnx_bytes(), token=viewer["token"]), 403)
    _, job_token = await training_job(scene)
    body = assert_problem(await _upload(scene, onnx_bytes(), token=job_token), 403)
    assert "Job tokens" in body["detail"]
    missing = await scene.client.post(
        f"{scene.base}/nope/versions/upload",
        files={"file": ("m.onnx", onnx_bytes())},
        headers=auth(scene.token),
    )
    assert_problem(missing, 404)
    await _nothing_stored(scene)
