"""A process that starts while its database is away waits for it instead of exiting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from structlog.testing import capture_logs

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


async def test_production_warns_about_secrets_in_plain_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("ARMILLARY_"):
            monkeypatch.delenv(name)
    secret_key, db_password, admin_password = "k" * 20 + "-plain-secret", "db-Pass-4242", "a" * 24
    (tmp_path / "admin").write_text(admin_password)
    monkeypatch.setenv("ARMILLARY_PROFILE", "production")
    monkeypatch.setenv("ARMILLARY_HOME", str(tmp_path))
    monkeypatch.setenv("ARMILLARY_SECRET_KEY", secret_key)
    # Nothing listens there: the process starts without reaching it.
    monkeypatch.setenv(
        "ARMILLARY_DATABASE_URL", f"postgresql+asyncpg://app:{db_password}@127.0.0.1:9/x"
    )
    monkeypatch.setenv("ARMILLARY_ADMIN_PASSWORD_FILE", str(tmp_path / "admin"))
    runtime = Runtime.create(Settings())
    try:
        with capture_logs() as logs:
            await runtime.start(relay_interval=60)
    finally:
        await runtime.stop()
    warnings = [entry for entry in logs if entry["event"] == "secrets_from_environment"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    # Names only; the one read from a file is not named.
    assert warnings[0]["settings"] == ["ARMILLARY_DATABASE_URL", "ARMILLARY_SECRET_KEY"]
    everything = repr(logs)
    for value in (secret_key, db_password, admin_password):
        assert value not in everything


async def test_the_embedded_profile_does_not_warn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARMILLARY_SECRET_KEY", "k" * 40)
    runtime = Runtime.create(Settings(home=tmp_path))
    try:
        with capture_logs() as logs:
            await runtime.start(relay_interval=60)
    finally:
        await runtime.stop()
    assert not [entry for entry in logs if entry["event"] == "secrets_from_environment"]
