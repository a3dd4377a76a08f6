"""Concurrent changes of one deployment on SQLite and PostgreSQL: every update and rollback
gets its own configuration version, and the history has no gap."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import REDIS_URL, auth, make_settings
from tests.integration.serving.support import Scene, assert_problem, variants

from armillary.kit.settings import Settings
from armillary.migrations.runner import upgrade

WRITERS = 8


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.sqlite), "postgresql"])
def settings_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Settings]:
    """The serving platform fixture on either database (overrides the PostgreSQL one)."""
    if request.param == "sqlite":
        settings = make_settings(tmp_path / "home", database_url=None, redis_url=None)
        upgrade(settings)
        return lambda **_: settings
    url: str = request.getfixturevalue("clean_pg")

    def factory(**overrides: Any) -> Settings:
        return make_settings(
            tmp_path / "home", **{"database_url": url, "redis_url": REDIS_URL, **overrides}
        )

    return factory


async def test_concurrent_updates_and_rollbacks_get_distinct_config_versions(
    scene: Scene,
) -> None:
    await scene.deployed()
    url = f"{scene.base}/churn-api"

    def update(weight: int) -> Any:
        body = {
            "variants": variants(
                ("champion", {"alias": "champion", "weight": 100 - weight}),
                ("challenger", {"version": 2, "weight": weight}),
            ),
            "reason": f"weight {weight}",
        }
        return scene.client.put(url, json=body, headers=auth(scene.token))

    changes = [update(10 * (i + 1)) for i in range(WRITERS)]
    changes.append(
        scene.client.post(f"{url}/rollback", json={"reason": "back"}, headers=auth(scene.token))
    )
    responses = await asyncio.gather(*changes)

    *updates, rollback = responses
    assert [r.status_code for r in updates] == [200] * WRITERS, [r.text for r in updates]
    # A rollback that took the lock before any update committed has nothing to go back to.
    if rollback.status_code == 409:
        assert "no earlier configuration" in assert_problem(rollback, 409)["detail"]
    else:
        assert rollback.status_code == 200, rollback.text
    done = [r for r in responses if r.status_code == 200]
    numbers = sorted(r.json()["config_version"] for r in done)
    assert numbers == list(range(2, len(done) + 2))
