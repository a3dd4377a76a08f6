"""Runs Alembic programmatically (``armillary db upgrade`` and application start-up)."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


def upgrade(settings: Settings, revision: str = "heads") -> None:
    """Bring the database to the newest schema of every service."""
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    config = alembic_config(settings.database_dsn)
    ssl = database_ssl(settings)
    if ssl is not None:
        config.attributes["connect_args"] = {"ssl": ssl}
    command.upgrade(config, revision)


async def upgrade_async(settings: Settings, revision: str = "heads") -> None:
    await asyncio.to_thread(upgrade, settings, revision)
