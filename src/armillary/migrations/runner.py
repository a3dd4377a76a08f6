"""Runs Alembic programmatically (``armillary db upgrade`` and application start-up)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from armillary.kit.db import database_ssl
from armillary.kit.settings import Settings

_HERE = Path(__file__).resolve().parent
_SRC = _HERE.parent
VERSION_LOCATIONS = [
    _SRC / "kit" / "migrations" / "versions",
    _SRC / "identity" / "migrations" / "versions",
    _SRC / "data" / "migrations" / "versions",
    _SRC / "workflows" / "migrations" / "versions",
    _SRC / "registry" / "migrations" / "versions",
    _SRC / "serving" / "migrations" / "versions",
]


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("version_locations", " ".join(str(p) for p in VERSION_LOCATIONS))
    config.set_main_option("path_separator", "space")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@dataclass(frozen=True)
class AppliedRevision:
    """A migration :func:`upgrade` ran: its revision id and its message."""

    revision: str
    description: str


def upgrade(settings: Settings, revision: str = "heads") -> list[AppliedRevision]:
    """Bring the database to the newest schema of every service (or to ``revision``);
    returns the migrations it applied, in order (none when it was up to date)."""
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    config = alembic_config(settings.database_dsn)
    ssl = database_ssl(settings)
    if ssl is not None:
        config.attributes["connect_args"] = {"ssl": ssl}
    applied: list[AppliedRevision] = []

    def record(*, step: Any, **_: Any) -> None:
        # `step` is Alembic's MigrationInfo: the revision it reached, and that one's message.
        script = step.up_revision
        doc = script.doc if script is not None else ""
        applied.append(AppliedRevision(str(step.up_revision_id), str(doc or "")))

    config.attributes["on_version_apply"] = record
    command.upgrade(config, revision)
    return applied


async def upgrade_async(settings: Settings, revision: str = "heads") -> None:
    await asyncio.to_thread(upgrade, settings, revision)
