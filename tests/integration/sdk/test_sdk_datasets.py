"""The Python SDK against the platform served by uvicorn on a loopback port (real HTTP).

The server runs in a thread of the test process; the SDK is synchronous, as scripts use it.
The helpers here (``start_server``, ``provision``) also serve the CLI tests.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY, free_port

from armillary.app import create_app
from armillary.data.settings import DataSettings
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.settings import S3_MIN_PART_SIZE
from armillary.sdk import ArmillaryError, ChecksumMismatch, Client, ConnectionFailed, Tokens

# Several 1 MiB chunks, so progress is reported more than once.
ROWS = 120_000


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="on", timeout_graceful_shutdown=5
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


StartServer = Callable[..., str]


@pytest.fixture
def start_server(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> Iterator[StartServer]:
    """Starts the platform (local storage unless ``storage_settings`` is given); returns its
    URL. Keyword arguments override :class:`Settings`. Stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(*, storage_settings: StorageSettings | None = None, **overrides: Any) -> str:
            spool = tmp_path / "spool"
            spool.mkdir(exist_ok=True)
            app = create_app(
                settings_factory(**overrides),
                configure_logs=False,
                storage_settings=storage_settings or StorageSettings(backend="local"),
                data_settings=DataSettings(spool_dir=str(spool)),
            )
            return stack.enter_context(serve(app))

        yield start


@dataclass
class Account:
    """A data scientist with their own project on a running server."""

    url: str
    email: str
    password: str
    project: str
    token: str


def provision(url: str, role: str = "data_scientist") -> Account:
    """Create a user with ``role`` and a project they own, through the HTTP API."""
    with httpx.Client(base_url=url) as http:

        def token(email: str, password: str) -> str:
            answer = http.post("/api/v1/auth/token", data={"username": email, "password": password})
            assert answer.status_code == 200, answer.text
            return str(answer.json()["access_token"])

        admin = {"Authorization": f"Bearer {token(ADMIN_EMAIL, ADMIN_PASSWORD)}"}
        email = f"{role}-{secrets.token_hex(4)}@example.com"
        password = "pw-" + secrets.token_hex(8)
        created = http.post(
            "/api/v1/users",
            json={"email": email, "name": role.title(), "role": role, "password": password},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        user_token = token(email, password)
        slug = f"proj-{secrets.token_hex(3)}"
        project = http.post(
            "/api/v1/projects",
            json={"slug": slug, "name": slug.title()},
            headers={"Authorization": f"Bearer {user_token}"},
        )
        assert project.status_code == 201, project.text
    return Account(url, email, password, slug, user_token)


def write_csv(path: Path, rows: int = ROWS, seed: int = 0) -> Path:
    """A CSV of ``rows`` rows; a different ``seed`` gives different bytes."""
    with path.open("w") as file:
        file.write("id,label,value\n")
        for i in range(rows):
            file.write(f"{i},{'abc'[(i + seed) % 3]},{(i * 7 + seed) % 1000 / 10}\n")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture
def server(start_server: StartServer) -> str:
    return start_server()


@pytest.fixture
def account(server: str) -> Account:
    return provision(server)


@pytest.fixture
def client(account: Account) -> Iterator[Client]:
    with Client(account.url) as signed_in:
        signed_in.login(account.email, account.password)
        yield signed_in


def test_upload_reports_progress_dedups_and_downloads_verified(
    client: Client, account: Account, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "measurements.csv")
    size = source.stat().st_size
    calls: list[tuple[int, int]] = []

    first = client.datasets.upload(
        account.project, "measurements", source, progress=lambda d, t: calls.append((d, t))
    )

    assert first.created is True
    assert first.version["number"] == 1
    assert first.version["sha256"] == sha256_of(source)
    assert first.version["size_bytes"] == size
    assert first.version["row_count"] == ROWS
    assert {total for _, total in calls} == {size}
    assert calls[-1] == (size, size)
    assert len(calls) > 2
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)

    again = client.datasets.upload(account.project, "measurements", source)
    assert again.created is False
    assert again.version["number"] == 1

    changed = write_csv(tmp_path / "changed.csv", rows=1000, seed=1)
    second = client.datasets.upload(account.project, "measurements", changed, parent=1)
    assert (second.created, second.version["number"]) == (True, 2)
    assert second.version["parent_version"] == 1

    dataset = client.datasets.get(account.project, "measurements")
    assert dataset["latest_version"] == 2
    assert [d["name"] for d in client.datasets.list(account.project)] == ["measurements"]
    versions = client.datasets.versions(account.project, "measurements")
    assert [v["number"] for v in versions] == [2, 1]
    detail = client.datasets.version(account.project, "measurements", 1)
    assert [c["name"] for c in detail["columns"]] == ["id", "label", "value"]
    assert detail["profile"] is not None
    assert detail["profile"][0]["null_count"] == 0

    seen: list[tuple[int, int]] = []
    target = tmp_path / "out" / "copy.csv"
    written = client.datasets.download(
        account.project, "measurements", 1, target, progress=lambda d, t: seen.append((d, t))
    )
    assert written == target
    assert target.read_bytes() == source.read_bytes()
    assert seen[-1] == (size, size)
    # A directory as destination: the file is named after the dataset and version.
    into_dir = client.datasets.download(account.project, "measurements", 2, tmp_path)
    assert into_dir == tmp_path / "measurements-v2.csv"
    assert sha256_of(into_dir) == second.version["sha256"]
    assert not list(tmp_path.rglob("*.part"))


def test_create_describe_and_delete_version(
    client: Client, account: Account, tmp_path: Path
) -> None:
    created = client.datasets.create(
        account.project, "events", description="Click events", tags=["raw", "web"]
    )
    assert (created["name"], created["tags"], created["latest_version"]) == (
        "events",
        ["raw", "web"],
        None,
    )
    source = tmp_path / "events.data"
    source.write_text('{"a": 1}\n{"a": 2}\n')
    result = client.datasets.upload(account.project, "events", source, format="jsonl")
    assert result.version["format"] == "jsonl"
    assert result.version["original_filename"] == "events.data"

    client.datasets.delete_version(account.project, "events", 1)

    assert client.datasets.versions(account.project, "events") == []
    deleted = client.datasets.versions(account.project, "events", include_deleted=True)
    assert [(v["number"], v["deleted"]) for v in deleted] == [(1, True)]
    with pytest.raises(ArmillaryError) as gone:
        client.datasets.download(account.project, "events", 1, tmp_path / "x.jsonl")
    assert gone.value.status == 404
    assert not (tmp_path / "x.jsonl").exists()


def test_errors_are_armillary_errors_with_status(
    client: Client, account: Account, server: str, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "d.csv", rows=10)

    with pytest.raises(ArmillaryError) as missing_project:
        client.datasets.list("no-such-project")
    assert missing_project.value.status == 404
    assert missing_project.value.title
    assert missing_project.value.body["status"] == 404

    with pytest.raises(ArmillaryError) as not_created:
        client.datasets.upload(account.project, "absent", source, create=False)
    assert not_created.value.status == 404
    with pytest.raises(ArmillaryError) as missing_dataset:
        client.datasets.get(account.project, "absent")
    assert missing_dataset.value.status == 404

    client.datasets.create(account.project, "taken")
    with pytest.raises(ArmillaryError) as duplicate:
        client.datasets.create(account.project, "taken")
    assert duplicate.value.status == 409

    with pytest.raises(ArmillaryError) as bad_name:
        client.datasets.create(account.project, "../escape")
    assert bad_name.value.status == 400
    assert bad_name.value.detail

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(ArmillaryError) as empty_file:
        client.datasets.upload(account.project, "taken", empty)
    assert empty_file.value.status == 400

    with Client(server) as anonymous, pytest.raises(ArmillaryError) as unauthenticated:
        anonymous.datasets.list(account.project)
    assert unauthenticated.value.status == 401

    with Client(server) as wrong, pytest.raises(ArmillaryError) as bad_login:
        wrong.login(account.email, "not-the-password")
    assert bad_login.value.status == 401

    nowhere = Client(f"http://127.0.0.1:{free_port()}")
    with nowhere, pytest.raises(ConnectionFailed) as unreachable:
        nowhere.datasets.list(account.project)
    assert unreachable.value.status == 0
    assert isinstance(unreachable.value, ArmillaryError)


def test_viewer_cannot_upload(account: Account, tmp_path: Path) -> None:
    viewer = provision(account.url)
    with httpx.Client(base_url=account.url) as http:
        added = http.put(
            f"/api/v1/projects/{account.project}/members/{viewer.email}",
            json={"role": "viewer"},
            headers={"Authorization": f"Bearer {account.token}"},
        )
        assert added.status_code in (200, 201), added.text
    with Client(account.url, account.token) as owner:
        owner.datasets.upload(account.project, "shared", write_csv(tmp_path / "a.csv", rows=5))
    with Client(account.url, viewer.token) as reader:
        assert [d["name"] for d in reader.datasets.list(account.project)] == ["shared"]
        with pytest.raises(ArmillaryError) as denied:
            reader.datasets.upload(
                account.project, "shared", write_csv(tmp_path / "b.csv", rows=6, seed=2)
            )
    assert denied.value.status == 403


def test_expired_access_token_is_renewed_once(start_server: StartServer, tmp_path: Path) -> None:
    url = start_server(access_token_ttl_seconds=2)
    account = provision(url)
    issued: list[Tokens] = []
    with Client(url, on_tokens=issued.append) as client:
        first = client.login(account.email, account.password)
        time.sleep(2.5)

        assert client.datasets.list(account.project) == []

        assert len(issued) == 2
        renewed = client.tokens
        assert renewed is not None
        assert renewed == issued[-1]
        assert renewed.access_token != first.access_token
        assert renewed.refresh_token != first.refresh_token

        # An upload after expiry renews too, before the body is sent.
        time.sleep(2.5)
        result = client.datasets.upload(
            account.project, "d", write_csv(tmp_path / "d.csv", rows=50)
        )
        assert result.created
        assert len(issued) == 3

    # A client given a token pair (as the CLI builds one) renews the same way.
    stale = issued[-1]
    with Client(url, "no-longer-valid", refresh_token=stale.refresh_token) as restored:
        assert [d["name"] for d in restored.datasets.list(account.project)] == ["d"]
        assert restored.tokens is not None
        assert restored.tokens.refresh_token != stale.refresh_token

    # A rotated refresh token is refused: the failure surfaces as a 401, not a loop.
    reused = Client(url, "expired", refresh_token=first.refresh_token)
    with reused, pytest.raises(ArmillaryError) as refused:
        reused.datasets.list(account.project)
    assert refused.value.status == 401


def test_tampered_bytes_fail_verification_and_leave_no_file(
    client: Client, account: Account, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "t.csv", rows=100)
    client.datasets.upload(account.project, "tampered", source)
    home = settings_factory().home
    objects = [p for p in (home / "objects").rglob("*") if p.is_file()]
    assert len(objects) == 1
    data = bytearray(objects[0].read_bytes())
    data[-2] = ord("9") if data[-2] != ord("9") else ord("8")  # same size, other bytes
    objects[0].write_bytes(bytes(data))

    target = tmp_path / "out.csv"
    target.write_text("keep me")
    with pytest.raises(ChecksumMismatch) as mismatch:
        client.datasets.download(account.project, "tampered", 1, target)

    assert mismatch.value.status == 0
    assert target.read_text() == "keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []


class RecordingTransport(httpx.BaseTransport):
    """The real network transport, remembering each request's host and headers."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen: list[tuple[str, int | None, str, bool]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(
            (
                request.url.host,
                request.url.port,
                request.url.path,
                "authorization" in request.headers,
            )
        )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_s3_download_follows_presigned_redirect_without_the_token(
    start_server: StartServer, moto_endpoint: str, tmp_path: Path
) -> None:
    from armillary.kit.storage.admin import s3_client

    storage = StorageSettings(
        backend="s3",
        s3_endpoint_url=moto_endpoint,
        s3_bucket=f"armillary-sdk-{uuid.uuid4().hex[:16]}",
        s3_region=REGION,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,  # type: ignore[arg-type]
        s3_allow_http=True,
        multipart_threshold_bytes=S3_MIN_PART_SIZE,
        part_size=S3_MIN_PART_SIZE,
    )
    s3_client(storage).create_bucket(Bucket=storage.bucket)
    url = start_server(storage_settings=storage)
    account = provision(url)
    source = write_csv(tmp_path / "blob.csv")

    transport = RecordingTransport()
    with Client(url, transport=transport) as client:
        client.login(account.email, account.password)
        client.datasets.upload(account.project, "blob", source)
        transport.seen.clear()
        written = client.datasets.download(account.project, "blob", 1, tmp_path / "blob-copy.csv")

    assert written.read_bytes() == source.read_bytes()
    api_port = httpx.URL(url).port
    moto_port = httpx.URL(moto_endpoint).port
    content = [s for s in transport.seen if s[2].endswith("/versions/1/content")]
    assert content
    assert all(s[1] == api_port and s[3] for s in content)
    fetched = [s for s in transport.seen if s[1] == moto_port]
    assert fetched, transport.seen
    assert not any(has_auth for *_, has_auth in fetched)
