"""A streamed download goes out in chunks of 4 MiB (fewer trips through Python and the ASGI
stack than 1 MiB), byte-identical, on both storage backends."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import auth
from tests.integration.data.support import Platform, make_scene, sha256

MIB = 1024 * 1024


async def test_a_streamed_download_goes_out_in_4_mib_chunks(platform: Platform) -> None:
    scene = await make_scene(platform)
    rows = b"".join(b"%d,%d\n" % (i, i % 97) for i in range(100_000))
    content = b"id,a\n" + rows * 12
    assert len(content) > 2 * 4 * MIB
    assert (await scene.upload("data.csv", content)).status_code == 201

    path = f"{scene.versions}/1/content"
    sent: list[dict[str, Any]] = []
    requested = False
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # Later calls listen for a disconnect: the client goes once the body is complete.
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            finished.set()

    headers = {"host": "testserver", **{k.lower(): v for k, v in auth(scene.token).items()}}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"redirect=false",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    await platform.app(scope, receive, send)
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    assert start["status"] == 200
    chunks = [m["body"] for m in sent if m["type"] == "http.response.body" and m["body"]]
    body = b"".join(chunks)
    assert sha256(body) == sha256(content)
    # Every chunk but the last is at least 4 MiB.
    assert len(chunks) >= 2
    assert all(len(chunk) >= 4 * MIB for chunk in chunks[:-1])
