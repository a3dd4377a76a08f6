from __future__ import annotations

import hashlib

from tests.conftest import Api, auth

CSV = b"a,b,c\n1,x,2.5\n2,y,\n3,x,1.0\n"


async def test_upload_list_download_dedup(api: Api) -> None:
    admin = await api.admin_token()
    ds = await api.create_user(admin, "data_scientist")
    token = ds["token"]
    project = await api.create_project(token, "demo")
    base = f"/api/v1/projects/{project['slug']}/datasets"
    created = await api.client.post(base, json={"name": "iris", "tags": ["x"]}, headers=auth(token))
    assert created.status_code == 201, created.text
    up = await api.client.post(
        f"{base}/iris/versions", files={"file": ("iris.csv", CSV, "text/csv")}, headers=auth(token)
    )
    assert up.status_code == 201, up.text
    version = up.json()
    assert version["number"] == 1
    assert version["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert version["row_count"] == 3
    assert [c["name"] for c in version["columns"]] == ["a", "b", "c"]
    again = await api.client.post(
        f"{base}/iris/versions", files={"file": ("other.csv", CSV, "text/csv")}, headers=auth(token)
    )
    assert again.status_code == 200
    assert again.json()["number"] == 1
    detail = await api.client.get(f"{base}/iris/versions/1", headers=auth(token))
    assert detail.json()["profile"][0]["null_count"] == 0
    content = await api.client.get(f"{base}/iris/versions/1/content", headers=auth(token))
    assert content.status_code == 200
    assert content.content == CSV
