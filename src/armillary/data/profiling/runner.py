"""Runs the profiler in a child process with a time limit."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from armillary.kit.errors import ServiceUnavailable, Unprocessable


class InvalidDatasetFile(Unprocessable):
    title = "Invalid dataset file"


async def run_profiler(
    path: Path,
    fmt: str,
    mode: Literal["check", "profile"],
    *,
    time_limit: float,
    threads: int,
    in_memory_max_bytes: int | None = None,
) -> dict[str, Any]:
    """The profiler's JSON answer; :class:`InvalidDatasetFile` when the file is unreadable."""
    env = {**os.environ, "POLARS_MAX_THREADS": str(threads)}
    if in_memory_max_bytes is not None:
        env["ARMILLARY_DATA_PROFILE_IN_MEMORY_MAX_BYTES"] = str(in_memory_max_bytes)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "armillary.data.profiling.profiler",
        str(path),
        fmt,
        mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        stdout, _stderr = await asyncio.wait_for(process.communicate(), timeout=time_limit)
    except TimeoutError as exc:
        raise ServiceUnavailable("Profiling the file took too long") from exc
    finally:
        # Timed out, or cancelled (shutdown, client gone): never leave the child running.
        if process.returncode is None:
            process.kill()
            await process.wait()
    try:
        answer: dict[str, Any] = json.loads(stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise ServiceUnavailable("The profiler failed") from exc
    if process.returncode == 2 and "error" in answer:
        raise InvalidDatasetFile(str(answer["error"]))
    if process.returncode != 0:
        raise ServiceUnavailable("The profiler failed")
    return answer
