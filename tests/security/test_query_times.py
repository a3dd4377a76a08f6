"""Times in queries: an offset that takes the instant outside years 1-9999 in UTC is a 422
problem. On PostgreSQL the driver converted it and overflowed (500), found by fuzzing."""

from __future__ import annotations

import pytest
from tests.conftest import Api, auth

EDGES = ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59-23:59"]


@pytest.mark.parametrize("value", EDGES)
@pytest.mark.parametrize(
    ("route", "name"),
    [
        ("/api/v1/audit", "since"),
        ("/api/v1/audit", "until"),
        ("/api/v1/projects/{project}/jobs", "since"),
        ("/api/v1/projects/{project}/jobs", "until"),
        ("/api/v1/projects/{project}/models/m/aliases/champion", "at"),
    ],
)
async def test_a_time_outside_the_calendar_is_a_422(
    api: Api, route: str, name: str, value: str
) -> None:
    token = await api.admin_token()
    project = (await api.create_project(token))["slug"]
    created = await api.client.post(
        f"/api/v1/projects/{project}/models", json={"name": "m"}, headers=auth(token)
    )
    assert created.status_code == 201, created.text
    response = await api.client.get(
        route.format(project=project), params={name: value}, headers=auth(token)
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_an_offset_within_the_calendar_still_filters(api: Api) -> None:
    token = await api.admin_token()
    await api.create_project(token)
    past = await api.client.get(
        "/api/v1/audit", params={"since": "2000-01-01T00:00:00+05:00"}, headers=auth(token)
    )
    assert past.status_code == 200, past.text
    assert past.json()["total"] >= 1
    future = await api.client.get(
        "/api/v1/audit", params={"since": "9999-01-01T00:00:00-05:00"}, headers=auth(token)
    )
    assert future.status_code == 200, future.text
    assert future.json()["total"] == 0
