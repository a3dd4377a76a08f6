"""Runs Alembic programmatically (``armillary db upgrade`` and application start-up).

Each service migrates its own tables in its own environment (ADR 0026): on PostgreSQL into
schema ``<service>`` with that schema's ``alembic_version``; on SQLite, where one file holds
everything, with a version table of its own (``alembic_version_<service>``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from armillary.kit.db import SERVICE_SCHEMAS, database_ssl
from armillary.kit.settings import Settings
from armillary.migrations import layout

_HERE = Path(__file__).resolve().parent
_SRC = _HERE.parent
# Each service's revisions, in the order `db upgrade` runs them (identity first: the
# embedded shape's search path finds the shared outbox in its schema).
SERVICE_VERSIONS = {
    service: _SRC / service / "migrations" / "versions" for service in SERVICE_SCHEMAS
}


def alembic_config(database_url: str, service: str) -> Config:
    if service not in SERVICE_VERSIONS:
        raise ValueError(f"unknown service {service!r}: one of {', '.join(SERVICE_VERSIONS)}")
    config = Config()
    config.set_main_option("script_location", str(_HERE))
    config.set_main_option("version_locations", str(SERVICE_VERSIONS[service]))
    config.set_main_option("path_separator", "space")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["service"] = service
    return config


def connect_args(settings: Settings) -> dict[str, Any]:
    """The driver's TLS arguments for an administrative connection (migrations, roles)."""
    ssl = database_ssl(settings)
    return {} if ssl is None else {"ssl": ssl}


def owner_of(revision: str) -> str:
    """The service whose branch holds ``revision`` (``data_0002`` → data)."""
    service = revision.split("_", 1)[0]
    if service not in SERVICE_VERSIONS:
        raise ValueError(f"{revision!r} names no service's revision")
    return service


@dataclass(frozen=True)
class AppliedRevision:
    """A migration :func:`upgrade` ran: its revision id and its message."""

    revision: str
    description: str


def upgrade(
    settings: Settings, revision: str = "heads", *, service: str | None = None
) -> list[AppliedRevision]:
    """Bring the database to the newest schema: every service's, or ``service``'s alone
    (run with that service's own role in the distributed shape).

    A whole-database upgrade (the embedded shape, or an administrator's DSN) first moves a
    database of the old single-schema layout into per-service schemas. Returns the
    migrations it applied, in order (none when it was up to date).
    """
    if settings.database_url is None:
        settings.home.mkdir(parents=True, exist_ok=True)
    dsn = settings.database_dsn
    tls = connect_args(settings)
    if revision not in ("head", "heads"):
        services = [owner_of(revision)]
    elif service is not None:
        services = [service]
    else:
        services = list(SERVICE_VERSIONS)
        asyncio.run(layout.prepare(dsn, tls))
    applied: list[AppliedRevision] = []

    def record(*, step: Any, **_: Any) -> None:
        # `step` is Alembic's MigrationInfo: the revision it reached, and that one's message.
        script = step.up_revision
        doc = script.doc if script is not None else ""
        applied.append(AppliedRevision(str(step.up_revision_id), str(doc or "")))

    for name in services:
        config = alembic_config(dsn, name)
        config.attributes["connect_args"] = tls
        config.attributes["on_version_apply"] = record
        command.upgrade(config, "head" if revision == "heads" else revision)
    return applied


async def upgrade_async(
    settings: Settings, revision: str = "heads", *, service: str | None = None
) -> None:
    await asyncio.to_thread(upgrade, settings, revision, service=service)
