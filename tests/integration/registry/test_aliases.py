"""Aliases: set, move, delete, roll back; history with who/when/why; as-of reads; who may move
them (viewers never, owners only where the model's policy says so); an event and an audit
entry for every change."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from tests.conftest import auth
from tests.integration.registry.support import (
    Scene,
    assert_problem,
    register,
    training_job,
    with_datasets,
)


async def _versions(scene: Scene, count: int) -> None:
    await with_datasets(scene)
    for _ in range(count):
        await register(scene)


async def _put(scene: Scene, alias: str, version: int, token: str, reason: str = "") -> Any:
    return await scene.client.put(
        f"{scene.model_base}/aliases/{alias}",
        json={"version": version, "reason": reason},
        headers=auth(token),
    )


async def _points_to(scene: Scene, alias: str, **params: str) -> Any:
    return await scene.client.get(
        f"{scene.model_base}/aliases/{alias}", params=params, headers=auth(scene.token)
    )


async def _events(scene: Scene) -> list[dict[str, Any]]:
    async with scene.platform.app.state.runtime.db.sessionmaker() as session:
        rows = await session.execute(
            text("SELECT payload FROM outbox_events WHERE type = :t ORDER BY created_at"),
            {"t": "registry.alias_moved"},
        )
        return [dict(r[0]) for r in rows]


async def test_history_as_of_and_rollback_after_several_moves(scene: Scene) -> None:
    await _versions(scene, 3)
    token = scene.token
    set_1 = await _put(scene, "champion", 1, token, "first model")
    assert set_1.status_code == 200, set_1.text
    assert set_1.json()["model_version"]["version"] == 1
    assert (await _put(scene, "champion", 2, token, "better f1")).status_code == 200
    assert (await _put(scene, "champion", 2, token, "again")).status_code == 200  # no move
    assert (await _put(scene, "champion", 3, token, "even better")).status_code == 200

    now = await _points_to(scene, "champion")
    assert (now.json()["alias"], now.json()["version"]) == ("champion", 3)

    url = f"{scene.model_base}/aliases/champion"
    history = (await scene.client.get(f"{url}/history", headers=auth(token))).json()
    moves = [(m["kind"], m["from_version"], m["to_version"], m["reason"]) for m in history["items"]]
    assert moves == [
        ("move", 2, 3, "even better"),
        ("move", 1, 2, "better f1"),
        ("set", None, 1, "first model"),
    ]
    assert {m["actor"] for m in history["items"]} == {scene.user["id"]}
    times = [m["at"] for m in reversed(history["items"])]

    # As of each move's time: the version it set; before the first: nothing.
    for at, expected in zip(times, (1, 2, 3), strict=True):
        then = await _points_to(scene, "champion", at=at)
        assert then.status_code == 200, then.text
        assert then.json()["version"] == expected
    before = (datetime.fromisoformat(times[0]) - timedelta(seconds=1)).isoformat()
    assert_problem(await _points_to(scene, "champion", at=before), 404)

    # Rollback walks back: 3 -> 2 -> 1, then nothing earlier (409).
    back = await scene.client.post(
        f"{url}/rollback", json={"reason": "regression"}, headers=auth(token)
    )
    assert back.status_code == 200, back.text
    assert back.json()["version"] == 2
    back = await scene.client.post(
        f"{url}/rollback", json={"reason": "still bad"}, headers=auth(token)
    )
    assert back.json()["version"] == 1
    refused = await scene.client.post(f"{url}/rollback", json={"reason": "x"}, headers=auth(token))
    assert_problem(refused, 409)

    # As of before the rollbacks it still says 3.
    rolled_at = (await scene.client.get(f"{url}/history", headers=auth(token))).json()["items"]
    assert rolled_at[0]["kind"] == "rollback"
    assert (await _points_to(scene, "champion", at=times[2])).json()["version"] == 3

    deleted = await scene.client.delete(url, params={"reason": "retired"}, headers=auth(token))
    assert deleted.status_code == 204
    assert_problem(await _points_to(scene, "champion"), 404)
    last = (await scene.client.get(f"{url}/history", headers=auth(token))).json()["items"][0]
    assert (last["kind"], last["from_version"], last["to_version"], last["reason"]) == (
        "delete",
        1,
        None,
        "retired",
    )
    assert_problem(
        await scene.client.post(f"{url}/rollback", json={"reason": "x"}, headers=auth(token)), 404
    )

    events = await _events(scene)
    assert [(e["from_version"], e["to_version"]) for e in events] == [
        (None, 1),
        (1, 2),
        (2, 3),
        (3, 2),
        (2, 1),
        (1, None),
    ]


async def test_aliases_are_listed_and_shown_on_the_model(scene: Scene) -> None:
    await _versions(scene, 2)
    await _put(scene, "champion", 1, scene.token)
    await _put(scene, "challenger", 2, scene.token)
    listed = await scene.client.get(f"{scene.model_base}/aliases", headers=auth(scene.token))
    assert [(a["alias"], a["version"]) for a in listed.json()] == [
        ("challenger", 2),
        ("champion", 1),
    ]
    model = (await scene.client.get(scene.model_base, headers=auth(scene.token))).json()
    assert model["aliases"] == {"challenger": 2, "champion": 1}
    assert_problem(await _put(scene, "champion", 9, scene.token), 404)
    assert_problem(await _put(scene, "Not-An-Alias", 1, scene.token), 422)


async def test_a_viewer_reads_aliases_but_cannot_move_them(scene: Scene) -> None:
    await _versions(scene, 2)
    await _put(scene, "champion", 1, scene.token)
    viewer = await scene.member("viewer")
    assert (
        await scene.client.get(
            f"{scene.model_base}/aliases/champion", headers=auth(viewer["token"])
        )
    ).status_code == 200
    url = f"{scene.model_base}/aliases/champion"
    assert_problem(await _put(scene, "champion", 2, viewer["token"]), 403)
    assert_problem(await scene.client.delete(url, headers=auth(viewer["token"])), 403)
    assert_problem(
        await scene.client.post(f"{url}/rollback", json={}, headers=auth(viewer["token"])), 403
    )
    assert (await _points_to(scene, "champion")).json()["version"] == 1


async def test_an_owner_only_alias_policy(scene: Scene) -> None:
    await _versions(scene, 2)
    editor = await scene.member("editor")
    # Only owners set policies.
    attempt = await scene.client.patch(
        scene.model_base,
        json={"alias_policies": {"champion": "editor"}},
        headers=auth(editor["token"]),
    )
    assert_problem(attempt, 403)
    policy = await scene.client.patch(
        scene.model_base, json={"alias_policies": {"champion": "owner"}}, headers=auth(scene.token)
    )
    assert policy.status_code == 200, policy.text
    assert policy.json()["alias_policies"] == {"champion": "owner"}

    assert_problem(await _put(scene, "champion", 1, editor["token"]), 403)
    assert (await _put(scene, "challenger", 1, editor["token"])).status_code == 200
    assert (await _put(scene, "champion", 1, scene.token)).status_code == 200
    url = f"{scene.model_base}/aliases/champion"
    assert_problem(await scene.client.delete(url, headers=auth(editor["token"])), 403)
    # An editor's job token is no owner either.
    _, job_token = await training_job(scene)
    editor_job = await scene.platform.app.state.runtime.access.directory.issue_job_token(
        user_id=uuid.UUID(editor["id"]),
        project_id=uuid.UUID(scene.project["id"]),
        job_id=uuid.uuid4(),
        ttl_seconds=60,
    )
    assert_problem(await _put(scene, "champion", 2, editor_job.token), 403)
    # The owner's job may (the register task's `alias`), but not delete or roll back.
    assert (await _put(scene, "champion", 2, job_token, "from the job")).status_code == 200
    assert_problem(await scene.client.delete(url, headers=auth(job_token)), 403)
    assert_problem(
        await scene.client.post(f"{url}/rollback", json={}, headers=auth(job_token)), 403
    )
    history = (await scene.client.get(f"{url}/history", headers=auth(scene.token))).json()
    assert history["items"][0]["job_id"] is not None
