"""The bug of issue 12: register tasks of one model at once. Every registration gets its own
number (or a clean problem), and no rollback deletes another registration's files."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from typing import Any

import pytest
from tests.conftest import auth
from tests.integration.concurrency.conftest import WRITERS
from tests.integration.concurrency.support import assert_rows_and_objects_agree
from tests.integration.registry.support import (
    Platform,
    Scene,
    assert_problem,
    sha256,
    training_job,
    version_body,
    with_datasets,
)

from armillary.kit.errors import Conflict
from armillary.registry.versions import service as versions


async def _scene(platform: Platform) -> Scene:
    api = platform.api
    user = await api.create_user(await api.admin_token(), "data_scientist")
    scene = Scene(platform, user, await api.create_project(user["token"]))
    created = await platform.client.post(
        scene.base, json={"name": scene.model}, headers=auth(scene.token)
    )
    assert created.status_code == 201, created.text
    await with_datasets(scene)
    return scene


async def _register_all(scene: Scene, bodies: list[dict[str, Any]]) -> list[Any]:
    tokens = [(await training_job(scene))[1] for _ in bodies]
    return await asyncio.gather(
        *(
            scene.client.post(f"{scene.model_base}/versions", json=body, headers=auth(token))
            for body, token in zip(bodies, tokens, strict=True)
        )
    )


async def _downloads(scene: Scene, number: int) -> bytes:
    response = await scene.client.get(
        f"{scene.model_base}/versions/{number}/artifacts/model.skops", headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    return response.content


async def test_concurrent_registrations_all_get_a_number_and_keep_their_files(
    platform: Platform,
) -> None:
    scene = await _scene(platform)
    responses = await _register_all(scene, [version_body() for _ in range(WRITERS)])

    assert [r.status_code for r in responses] == [201] * WRITERS, [r.text for r in responses]
    assert sorted(r.json()["version"] for r in responses) == list(range(1, WRITERS + 1))
    for response in responses:
        version = response.json()
        content = await _downloads(scene, version["version"])
        assert sha256(content) == version["artifacts"]["model.skops"]["sha256"]
    await assert_rows_and_objects_agree(platform, under="/models/")


async def test_register_tasks_of_one_training_all_get_its_one_version(
    platform: Platform,
) -> None:
    """Register tasks of one job that register the same train task's artifacts at once (as
    three register tasks after one training do): one version, which every request answers
    with; none is told to retry, and the files the others stored on the way are gone."""
    scene = await _scene(platform)
    _, token = await training_job(scene)
    responses = await asyncio.gather(
        *(
            scene.client.post(
                f"{scene.model_base}/versions", json=version_body(), headers=auth(token)
            )
            for _ in range(WRITERS)
        )
    )

    assert [r.status_code for r in responses] == [201] * WRITERS, [r.text for r in responses]
    assert {(r.json()["id"], r.json()["version"]) for r in responses} == {
        (responses[0].json()["id"], 1)
    }
    await _downloads(scene, 1)
    await assert_rows_and_objects_agree(platform, under="/models/")


async def test_a_failed_registration_removes_only_its_own_files(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The losers fail after their files are stored (as the UNIQUE error did): the rollback
    deletes their files and never the winners'."""
    scene = await _scene(platform)
    registered = versions._registered

    def fail_some(session: Any, access: Any, model: Any, version: Any, datasets: Any) -> None:
        if version.description == "doomed":
            raise Conflict("simulated loss after the files were stored")
        registered(session, access, model, version, datasets)

    monkeypatch.setattr(versions, "_registered", fail_some)
    bodies = [version_body() for _ in range(WRITERS)]
    for body in bodies[::2]:
        body["description"] = "doomed"
    responses = await _register_all(scene, bodies)

    won = [r for r in responses if r.status_code == 201]
    assert len(won) == WRITERS // 2
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409)
    for response in won:
        await _downloads(scene, response.json()["version"])
    await assert_rows_and_objects_agree(platform, under="/models/")


async def test_a_model_file_is_stored_under_its_version_id(platform: Platform) -> None:
    scene = await _scene(platform)
    (response,) = await _register_all(scene, [version_body()])
    assert response.status_code == 201, response.text
    runtime = platform.app.state.runtime
    async with runtime.db.read_only() as session:
        from armillary.registry.versions.models import ModelVersion

        row = await session.get(ModelVersion, uuid.UUID(response.json()["id"]))
    assert row is not None
    assert row.artifacts["model.skops"]["key"].endswith(f"/{row.id}/model.skops")


async def test_concurrent_alias_moves_form_one_unbroken_history(platform: Platform) -> None:
    """Each move records the version the alias left: under the model's lock the history is
    one chain (set, then every move from where the previous one went)."""
    scene = await _scene(platform)
    registered = await _register_all(scene, [version_body() for _ in range(4)])
    assert [r.status_code for r in registered] == [201] * 4
    url = f"{scene.model_base}/aliases/champion"
    targets = [1, 2, 3, 4, 2, 1, 4, 3]
    responses = await asyncio.gather(
        *(
            scene.client.put(
                url, json={"version": v, "reason": f"move {i}"}, headers=auth(scene.token)
            )
            for i, v in enumerate(targets)
        )
    )
    assert [r.status_code for r in responses] == [200] * len(targets), [r.text for r in responses]
    history = (await scene.client.get(f"{url}/history", headers=auth(scene.token))).json()
    moves = [(m["kind"], m["from_version"], m["to_version"]) for m in reversed(history["items"])]
    assert moves[0][:2] == ("set", None)
    for before, after in itertools.pairwise(moves):
        assert after == ("move", before[2], after[2])
    current = await scene.client.get(url, headers=auth(scene.token))
    assert current.json()["version"] == moves[-1][2]
