"""A process that starts while its database is away waits for it instead of exiting."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings


async def test_start_up_hooks_wait_for_the_database(tmp_path: Path) -> None:
    runtime = Runtime.create(Settings(home=tmp_path))
    calls = 0

    async def needs_the_database(_runtime: Runtime) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:  # refused twice: the database is still starting
            raise OperationalError(
                "SELECT 1", {}, ConnectionRefusedError(), connection_invalidated=True
            )

    runtime.startup_hooks.append(needs_the_database)
    try:
        await runtime.start(relay_interval=60)
        assert calls == 3
    finally:
        await runtime.stop()


async def test_other_start_up_failures_still_stop_the_process(tmp_path: Path) -> None:
    runtime = Runtime.create(Settings(home=tmp_path))

    async def broken(_runtime: Runtime) -> None:
        raise ValueError("a bug, not an outage")

    runtime.startup_hooks.append(broken)
    try:
        with pytest.raises(ValueError, match="a bug"):
            await runtime.start(relay_interval=60)
    finally:
        await runtime.stop()
