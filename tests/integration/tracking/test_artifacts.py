"""MLflow's artifact proxy over the object store: upload, list, download, delete; who may;
the size limit; and every form of path traversal refused with nothing written outside."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import Api, auth, client_for
from tests.integration.tracking.support import Mlflow, assert_error, editor_in_new_project

from armillary.app import create_app
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.settings import S3_MIN_PART_SIZE
from armillary.tracking.components import Tracking, tracking_of


@pytest.fixture
async def app(backend_settings: Settings) -> AsyncIterator[FastAPI]:
    app = create_app(backend_settings, configure_logs=False)
    async with LifespanManager(app, startup_timeout=60):
        yield app


@pytest.fixture
def tracking(app: FastAPI) -> Tracking:
    return tracking_of(app.state.runtime)


@pytest.fixture
async def mlflow(app: FastAPI) -> AsyncIterator[Mlflow]:
    async with client_for(app) as client:
        token, project = await editor_in_new_project(Api(client))
        yield Mlflow(client, project, token)


@pytest.fixture
async def run(mlflow: Mlflow) -> dict[str, Any]:
    experiment = await mlflow.experiment("with-files")
    return (await mlflow.run(experiment))["info"]


def proxy(mlflow: Mlflow, path: str, project: str | None = None) -> str:
    return f"/mlflow/{project or mlflow.project}/api/2.0/mlflow-artifacts/artifacts/{path}"


def root(run: dict[str, Any]) -> str:
    """The run's place in the proxy's namespace, from its artifact_uri as the client reads it."""
    uri = str(run["artifact_uri"])
    assert uri == f"mlflow-artifacts:/{run['experiment_id']}/{run['run_id']}/artifacts"
    return uri.removeprefix("mlflow-artifacts:/")


async def put(mlflow: Mlflow, path: str, content: Any, token: str | None = None) -> httpx.Response:
    return await mlflow.client.put(
        proxy(mlflow, path), content=content, headers=auth(token or mlflow.token)
    )


async def test_upload_list_download_and_delete(
    mlflow: Mlflow, run: dict[str, Any], tracking: Tracking
) -> None:
    # Bodies over the buffer go through a multipart upload while they arrive.
    tracking.storage_settings = StorageSettings(part_size=S3_MIN_PART_SIZE)
    big = os.urandom(S3_MIN_PART_SIZE + 12345)
    base = root(run)
    for path, body in (
        ("notes.txt", b"hello"),
        ("model/MLmodel", b"flavors: {}\n"),
        ("model/weights.bin", big),
        ("model/data/empty.json", b""),
    ):
        response = await put(mlflow, f"{base}/{path}", body)
        assert response.status_code == 200, response.text
        assert response.json() == {}

    listed = await mlflow.client.get(
        f"/mlflow/{mlflow.project}/api/2.0/mlflow-artifacts/artifacts",
        params={"path": base},
        headers=auth(mlflow.token),
    )
    assert listed.status_code == 200, listed.text
    assert listed.json()["files"] == [
        {"path": "model", "is_dir": True},
        {"path": "notes.txt", "is_dir": False, "file_size": 5},
    ]
    in_model = await mlflow.ok("GET", "artifacts/list", {"run_id": run["run_id"], "path": "model"})
    assert in_model["root_uri"] == run["artifact_uri"]
    assert in_model["files"] == [
        {"path": "model/MLmodel", "is_dir": False, "file_size": 12},
        {"path": "model/data", "is_dir": True},
        {"path": "model/weights.bin", "is_dir": False, "file_size": len(big)},
    ]

    downloaded = await mlflow.client.get(
        proxy(mlflow, f"{base}/model/weights.bin"), headers=auth(mlflow.token)
    )
    assert downloaded.status_code == 200
    assert downloaded.content == big
    assert downloaded.headers["content-disposition"].startswith("attachment")
    empty = await mlflow.client.get(
        proxy(mlflow, f"{base}/model/data/empty.json"), headers=auth(mlflow.token)
    )
    assert (empty.status_code, empty.content) == (200, b"")

    deleted = await mlflow.client.delete(proxy(mlflow, f"{base}/model"), headers=auth(mlflow.token))
    assert deleted.status_code == 200, deleted.text
    gone = await mlflow.client.get(
        proxy(mlflow, f"{base}/model/MLmodel"), headers=auth(mlflow.token)
    )
    assert_error(gone, 404, "RESOURCE_DOES_NOT_EXIST")
    rest = await mlflow.ok("GET", "artifacts/list", {"run_id": run["run_id"]})
    assert rest["files"] == [{"path": "notes.txt", "is_dir": False, "file_size": 5}]
    keys = await tracking.store.list_keys("")
    assert [k.rsplit("/artifacts/", 1)[1] for k in keys] == ["notes.txt"]


async def test_an_upload_reaches_the_store_while_its_body_still_arrives(
    mlflow: Mlflow, run: dict[str, Any], tracking: Tracking, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking.storage_settings = StorageSettings(part_size=S3_MIN_PART_SIZE)
    chunk, count = b"s" * (1024 * 1024), 10
    sent = 0
    sent_when_the_store_read: list[int] = []
    put_stream = tracking.store.put_stream

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(count):
            sent += len(chunk)
            yield chunk

    async def watched(key: str, chunks: AsyncIterator[bytes], **kw: Any) -> Any:
        async def reading() -> AsyncIterator[bytes]:
            async for part in chunks:
                sent_when_the_store_read.append(sent)
                yield part

        return await put_stream(key, reading(), **kw)

    monkeypatch.setattr(tracking.store, "put_stream", watched)
    assert (await put(mlflow, f"{root(run)}/streamed.bin", body())).status_code == 200
    # The store had its first bytes when about one part had arrived, not the whole body.
    assert sent_when_the_store_read[0] < count * len(chunk)
    stored = await tracking.store.head(f"{(await tracking.store.list_keys(''))[0]}")
    assert stored.size == count * len(chunk)


async def test_an_upload_over_the_limit_stores_nothing(
    mlflow: Mlflow, run: dict[str, Any], tracking: Tracking
) -> None:
    tracking.settings.max_artifact_bytes = 1000
    declared = await put(mlflow, f"{root(run)}/big.bin", b"x" * 1001)
    assert_error(declared, 413, "INVALID_PARAMETER_VALUE")

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(4):
            yield b"y" * 400

    streamed = await put(mlflow, f"{root(run)}/big.bin", chunked())
    assert_error(streamed, 413, "INVALID_PARAMETER_VALUE")
    assert await tracking.store.list_keys("") == []
    assert (await put(mlflow, f"{root(run)}/small.bin", b"z" * 1000)).status_code == 200


@pytest.mark.parametrize("backend_settings", ["postgresql"], indirect=True)
async def test_viewers_read_editors_write_other_projects_find_nothing(
    mlflow: Mlflow, run: dict[str, Any], app: FastAPI
) -> None:
    base = root(run)
    assert (await put(mlflow, f"{base}/a.txt", b"secret")).status_code == 200
    api = Api(mlflow.client)
    viewer = await api.create_user(await api.admin_token(), "user")
    added = await mlflow.client.put(
        f"/api/v1/projects/{mlflow.project}/members/{viewer['email']}",
        json={"role": "viewer"},
        headers=auth(mlflow.token),
    )
    assert added.status_code == 200, added.text
    read = await mlflow.client.get(proxy(mlflow, f"{base}/a.txt"), headers=auth(viewer["token"]))
    assert read.content == b"secret"
    assert_error(
        await put(mlflow, f"{base}/a.txt", b"x", viewer["token"]), 403, "PERMISSION_DENIED"
    )
    refused = await mlflow.client.delete(
        proxy(mlflow, f"{base}/a.txt"), headers=auth(viewer["token"])
    )
    assert_error(refused, 403, "PERMISSION_DENIED")

    other_token, other_project = await editor_in_new_project(api)
    for project in (mlflow.project, other_project):  # the owner's URL, then their own
        for response in (
            await mlflow.client.get(
                proxy(mlflow, f"{base}/a.txt", project), headers=auth(other_token)
            ),
            await mlflow.client.put(
                proxy(mlflow, f"{base}/b.txt", project), content=b"x", headers=auth(other_token)
            ),
            await mlflow.client.delete(
                proxy(mlflow, f"{base}/a.txt", project), headers=auth(other_token)
            ),
            await mlflow.client.get(
                f"/mlflow/{project}/api/2.0/mlflow/artifacts/list",
                params={"run_id": run["run_id"]},
                headers=auth(other_token),
            ),
        ):
            assert_error(response, 404, "RESOURCE_DOES_NOT_EXIST")
    # A run of the project under another experiment's id is not found either.
    other_experiment = await mlflow.experiment("other")
    moved = base.replace(run["experiment_id"], other_experiment, 1)
    assert_error(await put(mlflow, f"{moved}/c.txt", b"x"), 404, "RESOURCE_DOES_NOT_EXIST")
    store = tracking_of(app.state.runtime).store
    assert [k.rsplit("/", 1)[1] for k in await store.list_keys("")] == ["a.txt"]


async def test_a_deleted_run_takes_no_files(mlflow: Mlflow, run: dict[str, Any]) -> None:
    await mlflow.ok("POST", "runs/delete", {"run_id": run["run_id"]})
    assert_error(await put(mlflow, f"{root(run)}/late.txt", b"x"), 400, "INVALID_PARAMETER_VALUE")


# As sent on the wire (percent-encoded once, or twice), after the run's root.
TRAVERSALS = [
    "%2e%2e/%2e%2e/%2e%2e/evil.txt",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fevil.txt",
    "%2E%2E%2Fevil.txt",
    "..%2f..%2f..%2fevil.txt",
    "%252e%252e%252fevil.txt",
    "%25252e%25252e%25252fevil.txt",
    "a/%2e/evil.txt",
    "..%5c..%5cevil.txt",
    "dir%5cevil.txt",
    "evil%00.txt",
    "evil.txt%00",
    "a//evil.txt",
    "%2fetc%2fevil.txt",
]


async def raw_request(
    app: FastAPI, method: str, raw_path: bytes, token: str, body: bytes = b""
) -> tuple[int, bytes]:
    """A request whose path no client library normalizes (``..`` stays as sent)."""
    path, _, query = raw_path.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path.decode("latin-1")),
        "raw_path": path,
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    sent = False
    status = 0
    content = b""

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, content
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            content += message.get("body", b"")

    await app(scope, receive, send)
    return status, content


@pytest.mark.parametrize("backend_settings", ["postgresql"], indirect=True)
async def test_every_traversal_is_refused_and_nothing_lands_outside(
    mlflow: Mlflow, run: dict[str, Any], app: FastAPI, tracking: Tracking, tmp_path: Path
) -> None:
    base = root(run)
    for tail in TRAVERSALS:
        response = await mlflow.client.put(
            httpx.URL(f"http://testserver{proxy(mlflow, base)}/{tail}"),
            content=b"evil",
            headers=auth(mlflow.token),
        )
        assert_error(response, 400, "INVALID_PARAMETER_VALUE")
        assert "artifact path" in response.json()["detail"], tail
        listed = await mlflow.get(
            "artifacts/list", {"run_id": run["run_id"], "path": unquote(tail)}
        )
        assert_error(listed, 400, "INVALID_PARAMETER_VALUE")
    # Plain dot segments and absolute paths, as a raw HTTP request can carry them.
    for raw in (
        f"{proxy(mlflow, base)}/../../../evil.txt",
        f"{proxy(mlflow, base)}/./evil.txt",
        f"{proxy(mlflow, base)}/model/../../evil.txt",
        f"/mlflow/{mlflow.project}/api/2.0/mlflow-artifacts/artifacts//etc/evil.txt",
        f"/mlflow/{mlflow.project}/api/2.0/mlflow-artifacts/artifacts/C:/evil.txt",
    ):
        status, content = await raw_request(app, "PUT", raw.encode(), mlflow.token, b"evil")
        assert status == 400, (raw, content)
    for listing in ("/etc", f"{base}/../..", f"{base}/..\\..", "C:\\evil"):
        query = httpx.QueryParams({"path": listing})
        status, _ = await raw_request(
            app,
            "GET",
            f"/mlflow/{mlflow.project}/api/2.0/mlflow-artifacts/artifacts?{query}".encode(),
            mlflow.token,
        )
        assert status == 400, listing
    assert await tracking.store.list_keys("") == []
    written = [p for p in Path(tracking.runtime.settings.home).rglob("*") if "evil" in p.name]
    assert written == []
    assert [p for p in tmp_path.rglob("*") if "evil" in p.name] == []
