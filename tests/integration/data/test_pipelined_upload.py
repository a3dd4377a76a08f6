"""Uploads past the multipart threshold put their parts to S3 while the body still arrives
(moto server, 5 MiB parts). Each body below pauses midway until the store holds a part of
this upload, so the parts provably went out before the body ended; then the upload either
lands byte-identical under the version's key or, when refused or cut off, leaves no object
and no open multipart upload."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from tests.conftest import auth
from tests.integration.data.conftest import PART_SIZE, StartPlatform
from tests.integration.data.support import Platform, Scene, assert_problem, make_scene, sha256

from armillary.data.profiling.runner import ProfilerProcess
from armillary.kit.storage.admin import s3_client

pytestmark = pytest.mark.parametrize("backend", ["s3"], indirect=True)

BOUNDARY = "pipelined-upload-boundary"
CHUNK = 1024 * 1024
# Past the threshold (one part) plus a part: at least one part is out by then.
PAUSE_AT = 2 * PART_SIZE + CHUNK


def _csv(size: int) -> bytes:
    """A valid CSV of at least ``size`` bytes."""
    rows = b"".join(b"%d,%d,%d\n" % (i, i % 97, i * 7 % 1013) for i in range(50_000))
    body = b"id,a,b\n"
    while len(body) < size:
        body += rows
    return body


def _jsonl(size: int) -> bytes:
    rows = b"".join(b'{"id": %d, "a": %d}\n' % (i, i % 97) for i in range(50_000))
    body = b""
    while len(body) < size:
        body += rows
    return body


@pytest.fixture
def starts(monkeypatch: pytest.MonkeyPatch) -> list[ProfilerProcess]:
    """Every profiler child started, in order."""
    started: list[ProfilerProcess] = []
    original = ProfilerProcess.start.__func__  # type: ignore[attr-defined]

    async def counted(cls: type[ProfilerProcess], **kwargs: Any) -> ProfilerProcess:
        child: ProfilerProcess = await original(cls, **kwargs)
        started.append(child)
        return child

    monkeypatch.setattr(ProfilerProcess, "start", classmethod(counted))
    return started


def _open_uploads(platform: Platform) -> list[dict[str, Any]]:
    client = s3_client(platform.storage_settings)
    listing = client.list_multipart_uploads(Bucket=platform.storage_settings.bucket)
    return list(listing.get("Uploads", []))


def _parts_stored(platform: Platform) -> int:
    client = s3_client(platform.storage_settings)
    bucket = platform.storage_settings.bucket
    total = 0
    for upload in _open_uploads(platform):
        parts = client.list_parts(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        total += len(parts.get("Parts", []))
    return total


async def _until_a_part_is_stored(platform: Platform) -> None:
    for _ in range(600):
        if await asyncio.to_thread(_parts_stored, platform) > 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail("no part reached the store while the body was still arriving")


async def _body(
    platform: Platform,
    filename: str,
    data: bytes,
    *,
    fields_after: dict[str, str] | None = None,
    stop_at_pause: bool = False,
) -> AsyncIterator[bytes]:
    """A multipart body sent in 1 MiB chunks that waits, at ``PAUSE_AT`` bytes of the file,
    for a part of it to be in the store; ``stop_at_pause`` ends it there (cut off)."""
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for offset in range(0, len(data), CHUNK):
        if offset == PAUSE_AT:
            await _until_a_part_is_stored(platform)
            if stop_at_pause:
                return
        yield data[offset : offset + CHUNK]
    for name, value in (fields_after or {}).items():
        yield (
            f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}'
        ).encode()
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


async def _post(scene: Scene, body: AsyncIterator[bytes]) -> Any:
    return await scene.platform.client.post(
        scene.versions,
        content=body,
        headers={
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            **auth(scene.token),
        },
    )


def _dataset_keys(scene: Scene) -> list[str]:
    prefix = f"projects/{scene.project['id']}/datasets/{scene.dataset['id']}/"
    return [k for k in scene.platform.all_keys() if k.startswith(prefix)]


async def _assert_nothing_left(scene: Scene, rows_before: int) -> None:
    platform = scene.platform
    assert await platform.version_rows() == rows_before
    assert _dataset_keys(scene) == []
    assert _open_uploads(platform) == []
    assert platform.spool_files() == []


async def test_a_pipelined_upload_lands_byte_identical_with_its_hash(platform: Platform) -> None:
    scene = await make_scene(platform)
    data = _csv(3 * PART_SIZE + 12345)
    response = await _post(scene, _body(platform, "big.csv", data))
    assert response.status_code == 201, response.text
    version = response.json()
    assert version["sha256"] == sha256(data)
    assert version["size_bytes"] == len(data)
    key = await scene.key_for(sha256(data), "csv")
    assert await platform.store.get_bytes(key) == data
    assert (await platform.store.head(key)).content_type == "text/csv"
    assert _dataset_keys(scene) == [key]
    assert _open_uploads(platform) == []
    assert platform.spool_files() == []

    # The same bytes again: the existing version, and the second upload's parts are aborted.
    again = await _post(scene, _body(platform, "again.csv", data))
    assert again.status_code == 200, again.text
    assert again.json()["number"] == version["number"]
    assert _dataset_keys(scene) == [key]
    assert _open_uploads(platform) == []


async def test_the_check_starts_its_child_while_the_body_arrives(
    platform: Platform, starts: list[ProfilerProcess]
) -> None:
    """The profiler child that gates completion is started with the put, not after the body:
    at the pause midway one has started, and no other is started for this upload."""
    scene = await make_scene(platform)
    started_at_pause: list[int] = []

    async def body() -> AsyncIterator[bytes]:
        async for piece in _body(platform, "big.csv", _csv(3 * PART_SIZE)):
            if await asyncio.to_thread(_parts_stored, platform) and not started_at_pause:
                for _ in range(600):
                    if starts:
                        break
                    await asyncio.sleep(0.05)
                started_at_pause.append(len(starts))
            yield piece

    response = await _post(scene, body())
    assert response.status_code == 201, response.text
    assert started_at_pause == [1]
    assert len(starts) == 1
    assert all(s._process.returncode is not None for s in starts)


async def test_a_body_cut_off_by_the_size_limit_aborts_the_parts_sent(
    start_platform: StartPlatform,
) -> None:
    platform = await start_platform(max_upload_bytes=PAUSE_AT + 2 * CHUNK)
    scene = await make_scene(platform)
    rows = await platform.version_rows()
    response = await _post(scene, _body(platform, "big.csv", _csv(4 * PART_SIZE)))
    assert_problem(response, 413)
    await _assert_nothing_left(scene, rows)


async def test_a_file_refused_by_the_check_aborts_the_parts_sent(platform: Platform) -> None:
    scene = await make_scene(platform)
    rows = await platform.version_rows()
    # Named Parquet, so the put starts (for a .parquet key); the check then refuses the CSV.
    response = await _post(scene, _body(platform, "big.parquet", _csv(3 * PART_SIZE)))
    assert_problem(response, 422)
    await _assert_nothing_left(scene, rows)


async def test_a_client_that_disconnects_midway_leaves_nothing(
    platform: Platform, starts: list[ProfilerProcess]
) -> None:
    scene = await make_scene(platform)
    rows = await platform.version_rows()
    chunks = _body(platform, "big.csv", _csv(3 * PART_SIZE), stop_at_pause=True)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        try:
            return {"type": "http.request", "body": await anext(chunks), "more_body": True}
        except StopAsyncIteration:
            return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = {
        "host": "testserver",
        "content-type": f"multipart/form-data; boundary={BOUNDARY}",
        **{k.lower(): v for k, v in auth(scene.token).items()},
    }
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": scene.versions,
        "raw_path": scene.versions.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    await platform.app(scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 400
    await _assert_nothing_left(scene, rows)
    # The check's child, started with the put, does not outlive the upload.
    assert len(starts) == 1
    assert starts[0]._process.returncode is not None


async def test_a_format_sent_after_the_file_moves_the_object_to_its_key(
    platform: Platform,
) -> None:
    """The put starts for the name's format (.csv); the ``format`` field after the file
    says JSON Lines, so that put is aborted and the file stored under its .jsonl key."""
    scene = await make_scene(platform)
    data = _jsonl(3 * PART_SIZE)
    response = await _post(
        scene, _body(platform, "data.csv", data, fields_after={"format": "jsonl"})
    )
    assert response.status_code == 201, response.text
    assert response.json()["format"] == "jsonl"
    key = await scene.key_for(sha256(data), "jsonl")
    assert await platform.store.get_bytes(key) == data
    assert _dataset_keys(scene) == [key]
    assert _open_uploads(platform) == []
