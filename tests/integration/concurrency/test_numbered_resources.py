"""Every other place that allocates the next number or stores an object before commit, with
concurrent writers on one row: dataset versions (also twins of the same bytes), code bundle
versions, workflow versions. All succeed with distinct numbers (or the loser gets a clean
409), and afterwards the store and the rows agree; the audit chain stays intact."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import auth
from tests.integration.concurrency.conftest import WRITERS
from tests.integration.concurrency.support import assert_rows_and_objects_agree
from tests.integration.registry.support import Platform, assert_problem

from armillary.identity.components import identity_of


async def _owner(platform: Platform) -> tuple[str, str]:
    """(token, project slug) of a data scientist's new project."""
    api = platform.api
    user = await api.create_user(await api.admin_token(), "data_scientist")
    project = await api.create_project(user["token"])
    return str(user["token"]), str(project["slug"])


def _csv(rows: int) -> bytes:
    return ("a,b\n" + "".join(f"{i},{i * 2}\n" for i in range(rows))).encode()


async def _upload(platform: Platform, url: str, token: str, content: bytes) -> Any:
    return await platform.client.post(
        url, files={"file": ("data.csv", content, "text/csv")}, headers=auth(token)
    )


async def _audit_intact(platform: Platform) -> None:
    runtime = platform.app.state.runtime
    async with runtime.db.sessionmaker() as session:
        report = await identity_of(runtime).audit_log.verify(session)
    assert report.problems == []
    assert report.records_checked > 0


async def test_concurrent_dataset_versions_and_twins(platform: Platform) -> None:
    token, slug = await _owner(platform)
    base = f"/api/v1/projects/{slug}/datasets"
    created = await platform.client.post(base, json={"name": "events"}, headers=auth(token))
    assert created.status_code == 201, created.text
    url = f"{base}/events/versions"

    distinct = await asyncio.gather(
        *(_upload(platform, url, token, _csv(rows)) for rows in range(1, WRITERS + 1))
    )
    assert [r.status_code for r in distinct] == [201] * WRITERS, [r.text for r in distinct]
    assert sorted(r.json()["number"] for r in distinct) == list(range(1, WRITERS + 1))

    # The same new bytes from every writer: one version; the others are answered with it.
    twins = await asyncio.gather(*(_upload(platform, url, token, _csv(99)) for _ in range(4)))
    assert sorted(r.status_code for r in twins) == [200, 200, 200, 201]
    assert {r.json()["number"] for r in twins} == {WRITERS + 1}
    await assert_rows_and_objects_agree(platform, under="/datasets/")
    await _audit_intact(platform)


async def test_concurrent_code_bundle_versions(platform: Platform) -> None:
    token, slug = await _owner(platform)
    url = f"/api/v1/projects/{slug}/code/steps"
    responses = await asyncio.gather(
        *(
            platform.client.put(
                url,
                content=f"def main(**kwargs):\n    return {{'n': {n}}}\n".encode(),
                headers={**auth(token), "Content-Type": "text/x-python"},
            )
            for n in range(WRITERS)
        )
    )
    assert {r.status_code for r in responses} <= {200, 201}, [r.text for r in responses]
    numbers = sorted(r.json()["version"] for r in responses)
    assert numbers == list(range(1, WRITERS + 1))
    await assert_rows_and_objects_agree(platform, under="/code/")
    await _audit_intact(platform)


def _spec(n: int) -> dict[str, Any]:
    return {
        "name": "nightly",
        "description": f"variant {n}",
        "tasks": [{"name": "a", "type": "noop"}],
    }


async def test_concurrent_workflow_versions(platform: Platform) -> None:
    token, slug = await _owner(platform)
    base = f"/api/v1/projects/{slug}/workflows"
    first = await platform.client.post(base, json=_spec(0), headers=auth(token))
    assert first.status_code == 201, first.text
    responses = await asyncio.gather(
        *(platform.client.post(base, json=_spec(n), headers=auth(token)) for n in range(1, 9))
    )
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    numbers = sorted(r.json()["version"]["number"] for r in responses)
    assert numbers == list(range(2, 10))
    await _audit_intact(platform)


async def test_concurrent_creation_of_one_workflow_is_a_clean_conflict(
    platform: Platform,
) -> None:
    """Nothing to lock before the row exists: on PostgreSQL the losers of the insert get 409
    (SQLite serialises them and they add versions instead)."""
    token, slug = await _owner(platform)
    base = f"/api/v1/projects/{slug}/workflows"
    responses = await asyncio.gather(
        *(platform.client.post(base, json=_spec(n), headers=auth(token)) for n in range(4))
    )
    won = [r for r in responses if r.status_code == 201]
    assert won, [r.text for r in responses]
    numbers = sorted(r.json()["version"]["number"] for r in won)
    assert numbers == list(range(1, len(won) + 1))
    assert sum(r.json()["created"] and r.json()["version"]["number"] == 1 for r in won) == 1
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409)
    await _audit_intact(platform)


async def test_concurrent_creation_of_one_dataset_name_is_a_clean_conflict(
    platform: Platform,
) -> None:
    """The name check cannot see an insert that has not committed: the unique index refuses
    the losers, answered 409 problem+json (not 500)."""
    token, slug = await _owner(platform)
    base = f"/api/v1/projects/{slug}/datasets"
    responses = await asyncio.gather(
        *(
            platform.client.post(base, json={"name": "events"}, headers=auth(token))
            for _ in range(4)
        )
    )
    assert sum(r.status_code == 201 for r in responses) == 1, [r.text for r in responses]
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409)
