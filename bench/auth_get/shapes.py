"""The two other shapes issue 18 item 1 asks to measure, besides the embedded platform on
PostgreSQL (``armillary`` in run.py):

  armillary-sqlite   the embedded platform on SQLite with its in-process cache and limiter,
                     as `make run` starts it on a laptop (no PostgreSQL, no Redis)
  identity-service   the identity service's own process (`armillary serve identity`, the
                     distributed shape), on the same PostgreSQL database and Redis

The SQLite shape is seeded through its own API (its own database); the identity service
shares the PostgreSQL database run.py seeded, so the same token and project serve both.
"""

from __future__ import annotations

from pathlib import Path

from common import BenchConfig

# uvicorn target for the identity service's process (see identity_app.py).
IDENTITY_TARGET = ["--app-dir", str(Path(__file__).resolve().parent), "identity_app:create"]


def sqlite_env(config: BenchConfig) -> dict[str, str]:
    """The embedded shape with nothing but a home directory: SQLite, in-process cache."""
    home = config.home / "sqlite-home"
    home.mkdir(parents=True, exist_ok=True)
    env = config.armillary_env(
        ARMILLARY_HOME=str(home),
        ARMILLARY_DATABASE_URL=f"sqlite+aiosqlite:///{home / 'armillary.db'}",
    )
    del env["ARMILLARY_REDIS_URL"]
    return env


def migrate_sqlite(config: BenchConfig, env: dict[str, str]) -> None:
    from armillary.migrations.runner import upgrade

    upgrade(
        config.settings(
            home=Path(env["ARMILLARY_HOME"]),
            database_url=env["ARMILLARY_DATABASE_URL"],
            redis_url=None,
        )
    )


def identity_env(config: BenchConfig) -> dict[str, str]:
    return config.armillary_env()
