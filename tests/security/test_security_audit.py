"""F12: denied cross-project reads (404) and refused tokens (401) left no audit record. They
are security events now, aggregated so that a sweep cannot flood the hash chain: one entry per
source and window, the next one counting what was left out."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import FastAPI
from tests.conftest import Api, auth, client_for

from armillary.kit.security_events import (
    DENIED_PROJECT_READ,
    INVALID_TOKEN,
    SecurityEvent,
    SecurityEventSampler,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def use_clock(app: FastAPI) -> Clock:
    clock = Clock()
    sampler: SecurityEventSampler = app.state.runtime.security_events
    sampler._clock = clock  # the test moves time, instead of waiting for it
    return clock


async def entries(api: Api, admin: str, action: str) -> list[dict[str, Any]]:
    page = await api.client.get(
        "/api/v1/audit", params={"limit": 200, "action": action}, headers=auth(admin)
    )
    assert page.status_code == 200, page.text
    return [e for e in page.json()["items"] if e["action"] == action]


def forged_token() -> str:
    return "eyJhbGciOiJFZERTQSIsImtpZCI6ImFiY2RlZmdoaWoifQ.eyJzdWIiOiJ4In0." + secrets.token_hex(8)


async def test_a_token_sweep_is_recorded_without_flooding_the_chain(api: Api, app: FastAPI) -> None:
    clock = use_clock(app)
    admin = await api.admin_token()
    async with client_for(app, "198.51.100.23") as sweeper:
        for _ in range(30):
            response = await sweeper.get("/api/v1/projects", headers=auth(forged_token()))
            assert response.status_code == 401
        recorded = await entries(api, admin, INVALID_TOKEN)
        assert len(recorded) == 1
        (first,) = recorded
        assert first["outcome"] == "denied"
        assert first["client_address"] == "198.51.100.23"
        assert first["details"]["route"] == "/api/v1/projects"
        assert first["details"]["suppressed_before"] == 0
        # The forged token itself is nowhere in the entry.
        assert "eyJ" not in str(first)

        clock.now += 61
        response = await sweeper.get("/api/v1/projects", headers=auth(forged_token()))
        assert response.status_code == 401
    recorded = await entries(api, admin, INVALID_TOKEN)
    assert len(recorded) == 2
    assert max(e["details"]["suppressed_before"] for e in recorded) == 29


async def test_reads_of_another_tenants_project_are_recorded(api: Api, app: FastAPI) -> None:
    clock = use_clock(app)
    admin = await api.admin_token()
    owner = await api.create_user(admin, "data_scientist")
    prowler = await api.create_user(admin, "data_scientist")
    theirs = await api.create_project(owner["token"])
    mine = await api.create_project(prowler["token"])
    c = api.client
    targets = [
        f"/api/v1/projects/{theirs['slug']}",
        f"/api/v1/projects/{theirs['id']}/datasets",
        f"/api/v1/projects/{theirs['slug']}/workflows",
        f"/api/v1/projects/{theirs['slug']}/models",
        f"/api/v1/projects/{theirs['slug']}/access",
    ]
    for path in targets:
        assert (await c.get(path, headers=auth(prowler["token"]))).status_code == 404
    # Not security events: a missing thing in one's own project, a request without a token.
    own_missing = await c.get(
        f"/api/v1/projects/{mine['slug']}/datasets/nothing", headers=auth(prowler["token"])
    )
    assert own_missing.status_code == 404
    assert (await c.get(targets[0])).status_code == 401

    (entry,) = await entries(api, admin, DENIED_PROJECT_READ)
    assert entry["actor_id"] == prowler["id"]
    assert entry["resource_type"] == "project"
    assert entry["resource_id"] == theirs["slug"]
    assert entry["outcome"] == "denied"
    assert await entries(api, admin, INVALID_TOKEN) == []

    clock.now += 61
    assert (await c.get(targets[0], headers=auth(prowler["token"]))).status_code == 404
    recorded = await entries(api, admin, DENIED_PROJECT_READ)
    assert len(recorded) == 2
    assert max(e["details"]["suppressed_before"] for e in recorded) == len(targets) - 1


def test_a_sweep_from_many_addresses_is_capped_per_kind() -> None:
    clock = Clock()
    sampler = SecurityEventSampler(per_kind_limit=3, clock=clock)
    admitted = [
        sampler.admit(SecurityEvent(INVALID_TOKEN, f"addr:10.0.{n // 250}.{n % 250}"))
        for n in range(1000)
    ]
    assert [a for a in admitted if a is not None] == [0, 0, 0]
    clock.now += 60
    # The next recorded event counts the 997 that the cap left out.
    assert sampler.admit(SecurityEvent(INVALID_TOKEN, "addr:192.0.2.1")) == 997
    # Another kind has its own budget.
    assert sampler.admit(SecurityEvent(DENIED_PROJECT_READ, "user:1", "p")) == 0
