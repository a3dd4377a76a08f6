"""The project page from the cached access answer (issue 18, item 1): no database read while
the answer is cached, and never an old name or description after a change, in the process
that made it or in another one sharing the cache."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import event
from tests.conftest import Api, auth, client_for

from armillary.app import create_app
from armillary.contracts.events import ProjectChanged
from armillary.kit.events import Delivery
from armillary.kit.settings import Settings


@contextmanager
def statements_on(app: FastAPI) -> Iterator[list[str]]:
    """Every SQL statement the app's database engines run inside the block."""
    seen: list[str] = []
    db = app.state.runtime.db
    engines = {id(e): e.sync_engine for e in (db.engine, db.read_engine)}.values()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    for engine in engines:
        event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", record)


async def test_a_cached_project_page_reads_no_database(api: Api, app: FastAPI) -> None:
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    project = await api.create_project(scientist["token"])
    page = f"/api/v1/projects/{project['slug']}"
    first = await api.client.get(page, headers=auth(scientist["token"]))
    assert first.status_code == 200, first.text

    with statements_on(app) as statements:
        again = await api.client.get(page, headers=auth(scientist["token"]))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert statements == []
    body = again.json()
    assert body["name"] == project["name"]
    assert body["my_role"] == "owner"
    assert body["id"] == project["id"]
    assert body["created_by"] == scientist["id"]


async def test_a_change_is_read_back_at_once(api: Api) -> None:
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    viewer = await api.create_user(admin, "user")
    project = await api.create_project(scientist["token"])
    page = f"/api/v1/projects/{project['slug']}"
    by_id = f"/api/v1/projects/{project['id']}"
    added = await api.client.put(
        f"{page}/members/{viewer['id']}", json={"role": "viewer"}, headers=auth(scientist["token"])
    )
    assert added.status_code in (200, 201), added.text
    for token in (scientist["token"], viewer["token"]):
        for path in (page, by_id):
            assert (await api.client.get(path, headers=auth(token))).status_code == 200

    patched = await api.client.patch(
        page, json={"name": "Renamed", "description": "new words"}, headers=auth(scientist["token"])
    )
    assert patched.status_code == 200, patched.text
    for token in (scientist["token"], viewer["token"]):
        for path in (page, by_id):
            body = (await api.client.get(path, headers=auth(token))).json()
            assert (body["name"], body["description"]) == ("Renamed", "new words"), path
            assert body["updated_at"] == patched.json()["updated_at"]


async def test_another_process_reads_the_change_at_once(
    api: Api, app: FastAPI, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of the platform share PostgreSQL and the Redis cache: the copy that did
    not make the change must not serve the old fields from the shared cache, even before the
    change's broadcast has reached anyone (with RabbitMQ in between it comes a moment later;
    here it never comes)."""
    bus = app.state.runtime.bus
    delivered = bus.run_broadcast

    async def without_project_changes(delivery: Delivery) -> None:
        if delivery.type != ProjectChanged.TYPE:
            await delivered(delivery)

    monkeypatch.setattr(bus, "run_broadcast", without_project_changes)
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    project = await api.create_project(scientist["token"])
    page = f"/api/v1/projects/{project['slug']}"
    other_app = create_app(settings, configure_logs=False)
    async with (
        LifespanManager(other_app, startup_timeout=60, shutdown_timeout=60),
        client_for(other_app) as other,
    ):
        warmed = await other.get(page, headers=auth(scientist["token"]))
        assert warmed.json()["name"] == project["name"]
        patched = await api.client.patch(
            page, json={"name": "Changed Elsewhere"}, headers=auth(scientist["token"])
        )
        assert patched.status_code == 200, patched.text
        after = await other.get(page, headers=auth(scientist["token"]))
        assert after.json()["name"] == "Changed Elsewhere"


def test_the_project_page_is_matched_before_the_router_walk(app: FastAPI) -> None:
    """A hot route (ADR 0045): its copy comes before every router's routes, hidden from the
    OpenAPI document, which documents the original once."""
    hot = [r for r in app.router.routes[:4] if getattr(r, "name", None) == "projects.get"]
    assert len(hot) == 1
    assert getattr(hot[0], "include_in_schema", True) is False
    documented = app.openapi()["paths"]["/api/v1/projects/{project}"]
    assert documented["get"]["operationId"]
