"""The scheduler's leader lock and the LISTEN connections hold a session for as long as the
process lives: with a transaction pooler configured they go to ARMILLARY_DATABASE_DIRECT_URL,
never through the pooler (issue 14 item 3)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from armillary.kit.db import Database
from armillary.kit.settings import Settings
from armillary.workflows.scheduling.scheduler import Scheduler
from armillary.workflows.settings import WorkflowSettings

POOLER = "postgresql+asyncpg://armillary_workflows@127.0.0.1:6432/armillary"
DIRECT = "postgresql+asyncpg://armillary_workflows@127.0.0.1:5432/armillary"


async def test_session_features_bypass_the_pooler(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path,
        database_url=POOLER,
        database_pooler=True,
        database_direct_url=DIRECT,
        database_password=SecretStr("s3cret"),
    )
    db = Database.from_settings(settings, role="scheduler")
    try:
        assert db.url.startswith("postgresql+asyncpg://armillary_workflows:s3cret@127.0.0.1:6432/")
        assert db.direct_url == DIRECT.replace("workflows@", "workflows:s3cret@")
        scheduler = Scheduler(db, WorkflowSettings())
        for dsn in (scheduler.leadership.dsn, scheduler.listener.dsn):
            assert dsn == "postgresql://armillary_workflows:s3cret@127.0.0.1:5432/armillary"
    finally:
        await db.dispose()


async def test_without_a_direct_url_they_use_the_database_url(tmp_path: Path) -> None:
    db = Database.from_settings(Settings(home=tmp_path, database_url=DIRECT))
    try:
        assert db.direct_url == db.url == DIRECT
    finally:
        await db.dispose()
