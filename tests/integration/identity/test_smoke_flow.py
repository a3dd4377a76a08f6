from __future__ import annotations

from tests.conftest import Api, auth


async def test_admin_creates_data_scientist_who_creates_project(api: Api) -> None:
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    project = await api.create_project(ds["token"], "churn")
    assert project["slug"] == "churn"
    assert project["my_role"] == "owner"
    response = await api.client.get("/api/v1/projects/churn", headers=auth(ds["token"]))
    assert response.status_code == 200
    assert response.json()["id"] == project["id"]
