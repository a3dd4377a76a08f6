"""Files above the inline limit are answered at once with ``profile_status: pending`` and
profiled in the background; the version then shows ``ready`` with its profile, or ``failed``
with a reason when the file turns out to be malformed past its head."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from tests.conftest import auth
from tests.integration.data.conftest import StartPlatform
from tests.integration.data.support import ROWS, Scene, encode, known_frame, make_scene

POLL_SECONDS = 20.0


async def _settled(scene: Scene, number: int) -> dict[str, Any]:
    deadline = time.monotonic() + POLL_SECONDS
    while True:
        response = await scene.platform.client.get(
            f"{scene.versions}/{number}", headers=auth(scene.token)
        )
        assert response.status_code == 200, response.text
        version = dict(response.json())
        if version["profile_status"] != "pending":
            return version
        assert time.monotonic() < deadline, f"still pending after {POLL_SECONDS} s"
        await asyncio.sleep(0.1)


async def _no_spool_left(scene: Scene) -> None:
    # The background job removes the spool file once it is done (just after the commit).
    deadline = time.monotonic() + 5
    while scene.platform.spool_files() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert scene.platform.spool_files() == []


async def test_large_file_is_profiled_in_the_background(start_platform: StartPlatform) -> None:
    platform = await start_platform(profile_inline_max_bytes=1)
    scene = await make_scene(platform)
    content = encode(known_frame(), "csv")
    response = await scene.upload("data.csv", content)
    assert response.status_code == 201, response.text
    answered = response.json()
    assert answered["profile_status"] == "pending"
    assert answered["row_count"] is None
    # The schema is known at once, from the head of the file.
    assert [c["name"] for c in answered["columns"]] == ["id", "score", "category"]
    # The bytes are stored before the profile is done.
    download = await platform.client.get(
        f"{scene.versions}/1/content", params={"redirect": "false"}, headers=auth(scene.token)
    )
    assert download.content == content

    version = await _settled(scene, 1)
    assert version["profile_status"] == "ready", version
    assert version["profile_error"] is None
    assert version["row_count"] == ROWS
    profile = {c["name"]: c for c in version["profile"]}
    assert profile["id"]["min"] == 1
    assert profile["id"]["max"] == ROWS
    assert profile["score"]["null_count"] == ROWS // 10
    assert profile["category"]["top_values"][0] == {"value": "a", "count": 500}
    await _no_spool_left(scene)
    # Listed with the same status.
    listed = await platform.client.get(scene.versions, headers=auth(scene.token))
    assert listed.json()["items"][0]["profile_status"] == "ready"
    assert listed.json()["items"][0]["row_count"] == ROWS


async def test_malformed_tail_ends_failed_with_a_reason(start_platform: StartPlatform) -> None:
    platform = await start_platform(profile_inline_max_bytes=1)
    scene = await make_scene(platform)
    # Well-formed far past what the upload-time check reads, then a ragged last line.
    frame = pl.DataFrame({"a": range(200_000), "b": range(0, 400_000, 2)})
    content = encode(frame, "csv") + b"1,2,3,4\n"
    response = await scene.upload("data.csv", content)
    assert response.status_code == 201, response.text
    assert response.json()["profile_status"] == "pending"

    version = await _settled(scene, 1)
    assert version["profile_status"] == "failed", version
    assert "CSV" in version["profile_error"], version
    assert "fields" in version["profile_error"], version
    # No server path in the reason.
    assert str(platform.spool_dir) not in version["profile_error"]
    assert version["row_count"] is None
    assert version["profile"] is None
    await _no_spool_left(scene)


def _running(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_shutdown_stops_a_running_profiler(
    start_platform: StartPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping the platform while a file is being profiled ends the profiler child too."""
    platform = await start_platform(profile_inline_max_bytes=1)
    scene = await make_scene(platform)
    children: list[asyncio.subprocess.Process] = []
    spawn = asyncio.create_subprocess_exec

    async def slow_profiler(*args: Any, **kwargs: Any) -> asyncio.subprocess.Process:
        if args[-1] == "profile":
            # Stands in for a profile that takes minutes (same arguments, never finishes).
            args = (sys.executable, "-c", "import time; time.sleep(120)", *args[1:])
        process = await spawn(*args, **kwargs)
        children.append(process)
        return process

    # The runner calls ``asyncio.create_subprocess_exec`` through the module.
    monkeypatch.setattr(asyncio, "create_subprocess_exec", slow_profiler)
    try:
        response = await scene.upload("data.csv", encode(known_frame(), "csv"))
        assert response.status_code == 201, response.text
        assert response.json()["profile_status"] == "pending"
        deadline = time.monotonic() + 10
        while len(children) < 2:  # the upload's check, then the background profile
            assert time.monotonic() < deadline, "the background profile did not start"
            await asyncio.sleep(0.05)
        profiler = children[-1]
        assert _running(profiler.pid)

        await platform.stop()

        deadline = time.monotonic() + 5
        while _running(profiler.pid) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not _running(profiler.pid), "the profiler outlived the platform"
        assert platform.spool_files() == []
    finally:
        for child in children:
            if child.returncode is None and _running(child.pid):
                child.kill()
