"""Runs the profiler in a child process with a time limit.

A child can be started before its file is complete (:meth:`ProfilerProcess.start`): it loads
the interpreter and Polars, then waits for its arguments on stdin. An upload starts one while
its body arrives, so the check that gates the upload's completion does not pay that start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from armillary.kit.errors import ServiceUnavailable, Unprocessable

Mode = Literal["check", "profile"]


class InvalidDatasetFile(Unprocessable):
    title = "Invalid dataset file"


class ProfilerProcess:
    """One profiler child: started with :meth:`start`, used once by :meth:`run`, or ended
    unused by :meth:`discard`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._used = False

    @classmethod
    async def start(
        cls, *, threads: int, in_memory_max_bytes: int | None = None
    ) -> ProfilerProcess:
        env = {**os.environ, "POLARS_MAX_THREADS": str(threads)}
        if in_memory_max_bytes is not None:
            env["ARMILLARY_DATA_PROFILE_IN_MEMORY_MAX_BYTES"] = str(in_memory_max_bytes)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "armillary.data.profiling.profiler",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        return cls(process)

    async def run(self, path: Path, fmt: str, mode: Mode, *, time_limit: float) -> dict[str, Any]:
        """The profiler's JSON answer; :class:`InvalidDatasetFile` when the file is
        unreadable. The time limit counts from here, not from the start."""
        if self._used:
            raise RuntimeError("a profiler process runs once")
        self._used = True
        process = self._process
        request = json.dumps([str(path), fmt, mode]).encode() + b"\n"
        try:
            stdout, _stderr = await asyncio.wait_for(
                process.communicate(request), timeout=time_limit
            )
        except TimeoutError as exc:
            raise ServiceUnavailable("Profiling the file took too long") from exc
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The child died before it read its arguments.
            raise ServiceUnavailable("The profiler failed") from exc
        finally:
            # Timed out, or cancelled (shutdown, client gone): never leave the child running.
            await self.discard()
        try:
            answer: dict[str, Any] = json.loads(stdout or b"{}")
        except json.JSONDecodeError as exc:
            raise ServiceUnavailable("The profiler failed") from exc
        if process.returncode == 2 and "error" in answer:
            raise InvalidDatasetFile(str(answer["error"]))
        if process.returncode != 0:
            raise ServiceUnavailable("The profiler failed")
        return answer

    async def discard(self) -> None:
        """Kill the child unless it has exited, and reap it."""
        if self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()


async def run_profiler(
    path: Path,
    fmt: str,
    mode: Mode,
    *,
    time_limit: float,
    threads: int,
    in_memory_max_bytes: int | None = None,
    started: ProfilerProcess | None = None,
) -> dict[str, Any]:
    """The profiler's JSON answer, from ``started`` if given, else from a child started now;
    :class:`InvalidDatasetFile` when the file is unreadable."""
    profiler = started or await ProfilerProcess.start(
        threads=threads, in_memory_max_bytes=in_memory_max_bytes
    )
    return await profiler.run(path, fmt, mode, time_limit=time_limit)
