"""Bad uploads get a clear 4xx problem and leave nothing behind: no version row, no object,
no spool file. On both storage backends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from tests.conftest import auth
from tests.integration.data.conftest import StartPlatform
from tests.integration.data.support import (
    Platform,
    Scene,
    assert_problem,
    encode,
    known_frame,
    make_scene,
    sha256,
)

from armillary.kit import audit
from armillary.kit.errors import ServiceUnavailable

GOOD_CSV = b"a,b\n1,2\n3,4\n"
PARQUET = encode(known_frame().head(5), "parquet")


async def _assert_nothing_stored(
    scene: Scene, before: tuple[int, list[str], list[str]], case: str = ""
) -> None:
    platform = scene.platform
    assert await platform.snapshot() == before, case
    prefix = f"projects/{scene.project['id']}/datasets/{scene.dataset['id']}/"
    assert not [k for k in platform.all_keys() if k.startswith(prefix)], case
    assert platform.spool_files() == [], case


# (filename, content, form fields, status, words the detail must contain)
BAD_FILES: dict[str, tuple[str, bytes, dict[str, str], int, str]] = {
    "ragged csv": ("data.csv", b"a,b\n1,2\n3,4,5,6\n", {}, 422, "csv"),
    "unterminated quote": ("data.csv", b'a,b\n1,2\n"x,3\n', {}, 422, "csv"),
    "binary named csv": ("data.csv", PARQUET, {}, 422, "csv"),
    "csv named parquet": ("data.parquet", GOOD_CSV, {}, 422, "parquet"),
    "csv declared parquet": ("data.csv", GOOD_CSV, {"format": "parquet"}, 422, "parquet"),
    "csv named jsonl": ("data.jsonl", GOOD_CSV, {}, 422, "json"),
    "truncated jsonl": ("data.jsonl", b'{"a": 1}\n{"a": 2}\n{"a":', {}, 422, "json"),
    "header only whitespace": ("data.csv", b"\n", {}, 422, "empty"),
    "empty file": ("data.csv", b"", {}, 400, "empty"),
    "unsupported extension": ("data.xlsx", GOOD_CSV, {}, 400, ".xlsx"),
    "unknown declared format": ("data.csv", GOOD_CSV, {"format": "xml"}, 400, "format"),
    "parent that does not exist": ("data.csv", GOOD_CSV, {"parent": "7"}, 400, "7"),
    "parent that is not a number": ("data.csv", GOOD_CSV, {"parent": "../1"}, 400, "parent"),
}


async def test_bad_files_are_refused_and_nothing_is_stored(platform: Platform) -> None:
    scene = await make_scene(platform)
    before = await platform.snapshot()
    for case, (filename, content, fields, status, words) in BAD_FILES.items():
        response = await scene.upload(filename, content, data=fields)
        body = assert_problem(response, status, case)
        assert words.lower() in body["detail"].lower(), (case, body)
        # No server path leaks into the message.
        assert str(platform.spool_dir) not in response.text, case
        await _assert_nothing_stored(scene, before, case)
    # The dataset still works: a good file becomes version 1.
    good = await scene.upload("good.csv", GOOD_CSV)
    assert good.status_code == 201, good.text
    assert good.json()["number"] == 1


async def _raw_post(scene: Scene, content: bytes, content_type: str | None) -> httpx.Response:
    headers = auth(scene.token)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await scene.platform.client.post(scene.versions, content=content, headers=headers)


def _multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    boundary = "test-boundary-1234"
    body = b""
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _bad_bodies() -> dict[str, tuple[bytes, str | None, int]]:
    only_field, only_field_type = _multipart(("format", None, b"csv"))
    wrong_field, wrong_field_type = _multipart(("upload", "data.csv", GOOD_CSV))
    two_files, two_files_type = _multipart(
        ("file", "a.csv", GOOD_CSV), ("file", "b.csv", GOOD_CSV + b"5,6\n")
    )
    return {
        "no file field": (only_field, only_field_type, 400),
        "file in another field": (wrong_field, wrong_field_type, 400),
        "two files": (two_files, two_files_type, 400),
        "garbage multipart": (b"\x00\xffnot multipart at all", two_files_type, 400),
        "json body": (b'{"file": "a,b"}', "application/json", 415),
        "raw octet stream": (GOOD_CSV, "application/octet-stream", 415),
        "multipart without boundary": (two_files, "multipart/form-data", 415),
        "no content type": (GOOD_CSV, None, 415),
    }


async def test_bad_request_bodies_are_refused_and_nothing_is_stored(platform: Platform) -> None:
    scene = await make_scene(platform)
    before = await platform.snapshot()
    for case, (content, content_type, status) in _bad_bodies().items():
        assert_problem(await _raw_post(scene, content, content_type), status, case)
        await _assert_nothing_stored(scene, before, case)


async def test_size_limit(start_platform: StartPlatform) -> None:
    platform = await start_platform(max_upload_bytes=1000)
    scene = await make_scene(platform)
    before = await platform.snapshot()
    over = b"a,b\n" + b"1,2\n" * 250  # 1004 bytes
    body = assert_problem(await scene.upload("data.csv", over), 413)
    assert "1000" in body["detail"]
    await _assert_nothing_stored(scene, before)
    # Far over the limit: refused from Content-Length before the body is read.
    huge = b"a,b\n" + b"1,2\n" * 100_000
    assert_problem(await scene.upload("data.csv", huge), 413)
    await _assert_nothing_stored(scene, before)
    # Exactly at the limit is allowed.
    exact = over[:-4]
    assert len(exact) == 1000
    accepted = await scene.upload("data.csv", exact)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["size_bytes"] == 1000


async def test_failure_after_the_object_was_written_removes_it(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure late in the transaction (after the put) rolls back the row and deletes the
    object that was written for it."""
    scene = await make_scene(platform)
    before = await platform.snapshot()
    record = audit.record
    written: list[bool] = []

    def failing_record(session: Any, **kwargs: Any) -> None:
        if kwargs.get("resource_type") == "dataset_version" and not written:
            written.append(True)
            raise ServiceUnavailable("simulated failure after the put")
        record(session, **kwargs)

    # The service calls ``audit.record`` through the module, so patching the module reaches it.
    monkeypatch.setattr(audit, "record", failing_record)
    content = encode(known_frame(), "csv")
    response = await scene.upload("data.csv", content)
    assert_problem(response, 503)
    assert written == [True]
    await _assert_nothing_stored(scene, before)
    monkeypatch.undo()
    retried = await scene.upload("data.csv", content)
    assert retried.status_code == 201, retried.text
    assert retried.json()["number"] == 1
    assert await platform.store.exists(await scene.key_for(sha256(content), "csv"))
