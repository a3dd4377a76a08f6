"""Project code bundles over HTTP: upload (Python file or zip), versions, dedupe, the safety
checks, limits, access, deletion, and what the worker reads back."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from tests.conftest import Api, auth

from armillary.workflows.code import repository
from armillary.workflows.code.schemas import CodeSettings
from armillary.workflows.code.service import bundle_bytes
from armillary.workflows.code.zipcheck import extract_bundle
from armillary.workflows.components import workflows_of

PY = {"Content-Type": "text/x-python"}
ZIP = {"Content-Type": "application/zip"}
SOURCE = b"def main(**kwargs):\n    return {'answer': 42}\n"


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


PACKAGE = make_zip(
    [
        ("pipeline/__init__.py", b""),
        ("pipeline/steps.py", b"def train(**kw):\n    return {'ok': True}\n"),
        ("config.json", b"{}"),
    ]
)


async def editor_project(api: Api) -> tuple[str, str, str, str]:
    """(admin token, editor token, project slug, code URL)."""
    admin = await api.admin_token()
    editor = await api.create_user(admin, "data_scientist")
    project = await api.create_project(editor["token"])
    slug = project["slug"]
    return admin, editor["token"], slug, f"/api/v1/projects/{slug}/code"


async def project_id(api: Api, slug: str, token: str) -> uuid.UUID:
    response = await api.client.get(f"/api/v1/projects/{slug}", headers=auth(token))
    assert response.status_code == 200, response.text
    return uuid.UUID(response.json()["id"])


async def put(api: Api, url: str, body: bytes, token: str, headers: dict[str, str]) -> Any:
    return await api.client.put(url, content=body, headers={**auth(token), **headers})


async def test_upload_versions_and_dedupe(api: Api, app: FastAPI) -> None:
    _admin, token, slug, base = await editor_project(api)

    created = await put(api, f"{base}/train", SOURCE, token, PY)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["name"] == "train"
    assert body["kind"] == "py"
    assert body["version"] == 1
    assert body["entries"] == 1
    assert body["size_bytes"] == len(SOURCE)
    assert body["sha256"] == hashlib.sha256(SOURCE).hexdigest()
    assert created.headers["Location"] == f"/api/v1/projects/{slug}/code/train"

    # The same bytes again: the latest version, no new one.
    again = await put(api, f"{base}/train", SOURCE, token, PY)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 1
    assert again.json()["id"] == body["id"]

    changed = SOURCE + b"\n# v2\n"
    second = await put(api, f"{base}/train", changed, token, PY)
    assert second.status_code == 201
    assert second.json()["version"] == 2
    assert second.json()["sha256"] == hashlib.sha256(changed).hexdigest()

    zipped = await put(api, f"{base}/pipeline", PACKAGE, token, ZIP)
    assert zipped.status_code == 201, zipped.text
    assert zipped.json()["kind"] == "zip"
    assert zipped.json()["entries"] == 3
    assert zipped.json()["sha256"] == hashlib.sha256(PACKAGE).hexdigest()

    got = await api.client.get(f"{base}/train", headers=auth(token))
    assert got.status_code == 200
    assert got.json()["version"] == 2
    listed = await api.client.get(base, headers=auth(token))
    assert listed.status_code == 200
    assert listed.json()["total"] == 2
    assert [(b["name"], b["version"]) for b in listed.json()["items"]] == [
        ("pipeline", 1),
        ("train", 2),
    ]
    page = await api.client.get(f"{base}?limit=1&offset=1", headers=auth(token))
    assert [b["name"] for b in page.json()["items"]] == ["train"]

    # What the worker does: the latest version, its bytes from the store.
    runtime = app.state.runtime
    store = workflows_of(runtime).store
    assert store is not None
    pid = await project_id(api, slug, token)
    async with runtime.db.sessionmaker() as session:
        for name, expected in [("train", changed), ("pipeline", PACKAGE)]:
            found = await repository.latest_bundle(session, pid, name)
            assert found is not None
            assert await bundle_bytes(store, found) == expected
            assert found.object_key == f"projects/{pid}/code/{found.id}/{found.sha256}.{found.kind}"
        assert await repository.latest_bundle(session, pid, "missing") is None
        assert await repository.latest_bundle(session, uuid.uuid4(), "train") is None


async def test_sniffed_content_types_and_unsupported_ones(api: Api) -> None:
    _admin, token, _slug, base = await editor_project(api)
    octet = {"Content-Type": "application/octet-stream"}
    as_zip = await put(api, f"{base}/sniffed-zip", PACKAGE, token, octet)
    assert as_zip.status_code == 201
    assert as_zip.json()["kind"] == "zip"
    as_py = await put(api, f"{base}/sniffed_py", SOURCE, token, {"Content-Type": "text/plain"})
    assert as_py.json()["kind"] == "py"
    other = await put(api, f"{base}/x", SOURCE, token, {"Content-Type": "image/png"})
    assert other.status_code == 415
    bad_name = await put(api, f"{base}/Bad.Name", SOURCE, token, PY)
    assert bad_name.status_code == 422
    assert "Bundle names" in bad_name.json()["detail"]


async def test_unsafe_zips_are_refused_naming_the_entry(api: Api) -> None:
    _admin, token, _slug, base = await editor_project(api)
    link = zipfile.ZipInfo("pkg/link.py")
    link.external_attr = 0o120777 << 16
    cases: list[tuple[bytes, str, str]] = [
        (make_zip([("ok.py", b""), ("../evil.py", b"x")]), "../evil.py", "'..'"),
        (make_zip([("/etc/evil.py", b"x")]), "/etc/evil.py", "absolute"),
        (make_zip([("main.py", b""), (link, b"/etc/passwd")]), "pkg/link.py", "symbolic link"),
        (make_zip([("zeros.bin", b"\0" * (4 * 1024 * 1024))]), "zeros.bin", "ratio"),
    ]
    for data, entry, reason in cases:
        response = await put(api, f"{base}/bundle", data, token, ZIP)
        assert response.status_code == 422, (entry, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["entry"] == entry
        assert entry in problem["detail"]
        assert reason in problem["detail"]
    broken = await put(api, f"{base}/bundle", b"PK\x03\x04 truncated", token, ZIP)
    assert broken.status_code == 422
    assert "not a valid zip" in broken.json()["detail"]
    assert (await api.client.get(base, headers=auth(token))).json()["total"] == 0


async def test_python_syntax_errors_give_the_line(api: Api) -> None:
    _admin, token, _slug, base = await editor_project(api)
    response = await put(api, f"{base}/broken", b"x = 1\ny = (\n\ndef f(:\n", token, PY)
    assert response.status_code == 422
    problem = response.json()
    assert problem["line"] >= 2
    assert f"line {problem['line']}" in problem["detail"]
    latin1 = await put(api, f"{base}/broken", b"name = '\xe9'\n", token, PY)
    assert latin1.status_code == 422
    assert "UTF-8" in latin1.json()["detail"]
    empty = await put(api, f"{base}/broken", b"", token, PY)
    assert empty.status_code == 422
    assert (await api.client.get(f"{base}/broken", headers=auth(token))).status_code == 404


async def test_oversize_uploads_get_413(api: Api, app: FastAPI) -> None:
    _admin, token, _slug, base = await editor_project(api)
    workflows_of(app.state.runtime).code_settings = CodeSettings(max_bundle_bytes=1024)
    big = b"# " + b"x" * 2000 + b"\n"
    response = await put(api, f"{base}/big", big, token, PY)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")

    # A body that does not declare its length is cut off while it streams.
    async def chunks() -> Any:
        for _ in range(4):
            yield b"#" * 400

    streamed = await api.client.put(f"{base}/big", content=chunks(), headers={**auth(token), **PY})
    assert streamed.status_code == 413
    assert (await api.client.get(f"{base}/big", headers=auth(token))).status_code == 404


async def test_viewers_read_editors_write_outsiders_see_nothing(api: Api) -> None:
    admin, token, slug, base = await editor_project(api)
    viewer = await api.create_user(admin, "user")
    outsider = await api.create_user(admin, "data_scientist")
    added = await api.client.put(
        f"/api/v1/projects/{slug}/members/{viewer['id']}",
        json={"role": "viewer"},
        headers=auth(token),
    )
    assert added.status_code in (200, 201), added.text
    assert (await put(api, f"{base}/train", SOURCE, token, PY)).status_code == 201

    assert (await put(api, f"{base}/train", SOURCE + b"#", viewer["token"], PY)).status_code == 403
    assert (await put(api, f"{base}/other", SOURCE, viewer["token"], PY)).status_code == 403
    assert (await api.client.get(f"{base}/train", headers=auth(viewer["token"]))).is_success
    assert (await api.client.get(base, headers=auth(viewer["token"]))).json()["total"] == 1
    denied = await api.client.delete(f"{base}/train", headers=auth(viewer["token"]))
    assert denied.status_code == 403

    for method, url in [
        ("GET", base),
        ("GET", f"{base}/train"),
        ("PUT", f"{base}/train"),
        ("DELETE", f"{base}/train"),
    ]:
        response = await api.client.request(
            method, url, content=SOURCE, headers={**auth(outsider["token"]), **PY}
        )
        assert response.status_code == 404, (method, url, response.status_code)
    assert (await api.client.get(f"{base}/train", headers=auth(token))).json()["version"] == 1


async def test_delete_removes_every_version_and_its_objects(api: Api, app: FastAPI) -> None:
    admin, token, slug, base = await editor_project(api)
    await put(api, f"{base}/train", SOURCE, token, PY)
    await put(api, f"{base}/train", SOURCE + b"# 2\n", token, PY)
    runtime = app.state.runtime
    store = workflows_of(runtime).store
    assert store is not None
    pid = await project_id(api, slug, token)
    async with runtime.db.sessionmaker() as session:
        keys = [b.object_key for b in await repository.all_versions(session, pid, "train")]
    assert len(keys) == 2
    for key in keys:
        assert await store.exists(key)

    deleted = await api.client.delete(f"{base}/train", headers=auth(token))
    assert deleted.status_code == 204
    assert (await api.client.get(f"{base}/train", headers=auth(token))).status_code == 404
    assert (await api.client.delete(f"{base}/train", headers=auth(token))).status_code == 404
    for key in keys:
        assert not await store.exists(key)
    fresh = await put(api, f"{base}/train", SOURCE, token, PY)
    assert fresh.status_code == 201
    assert fresh.json()["version"] == 1

    audit = await api.client.get("/api/v1/audit", headers=auth(admin))
    assert audit.status_code == 200, audit.text
    actions = [e["action"] for e in audit.json()["items"]]
    assert "code.upload" in actions
    assert "code.delete" in actions


async def test_a_stored_zip_extracts_under_its_destination(
    api: Api, app: FastAPI, tmp_path: Path
) -> None:
    _admin, token, slug, base = await editor_project(api)
    assert (await put(api, f"{base}/pipeline", PACKAGE, token, ZIP)).status_code == 201
    runtime = app.state.runtime
    store = workflows_of(runtime).store
    assert store is not None
    pid = await project_id(api, slug, token)
    async with runtime.db.sessionmaker() as session:
        bundle = await repository.latest_bundle(session, pid, "pipeline")
    assert bundle is not None
    data = await bundle_bytes(store, bundle)
    work = tmp_path / "work"
    root = extract_bundle(data, bundle.kind, work / "attempt" / "code")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["config.json", "pipeline/__init__.py", "pipeline/steps.py"]
    everything = sorted(p.relative_to(work).as_posix() for p in work.rglob("*"))
    assert all(p == "attempt" or p.startswith("attempt/code") for p in everything)


async def test_applying_a_spec_checks_that_its_bundle_exists(api: Api) -> None:
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    project = (await api.create_project(user["token"]))["slug"]
    spec = {
        "name": "uses-bundle",
        "tasks": [
            {"name": "ok", "type": "python", "params": {"source": "def main():\n    return {}\n"}},
            {"name": "missing", "type": "python", "params": {"bundle": "nowhere"}},
        ],
    }
    response = await api.client.post(
        f"/api/v1/projects/{project}/workflows", json=spec, headers=auth(user["token"])
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"] == [
        {
            "path": "tasks[1].params.bundle",
            "message": f"no code bundle 'nowhere' in project {project}",
            "kind": "missing_object",
        }
    ]
    uploaded = await api.client.put(
        f"/api/v1/projects/{project}/code/nowhere",
        content=b"def main():\n    return {}\n",
        headers={**auth(user["token"]), "Content-Type": "text/x-python"},
    )
    assert uploaded.status_code == 201, uploaded.text
    response = await api.client.post(
        f"/api/v1/projects/{project}/workflows", json=spec, headers=auth(user["token"])
    )
    assert response.status_code == 201, response.text
