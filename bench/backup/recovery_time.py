"""Recovery time of `armillary backup` for a given data size, beside `pg_dump`/`pg_restore`
alone on the same database (the floor: the database part of any backup of it).

    .venv/bin/python bench/backup/recovery_time.py --datasets 4 --mib 64

A database of its own on the local PostgreSQL (dropped at the end), the local object store
in a temporary home, the platform in process (ASGI): a project with ``--datasets`` CSV
versions of ``--mib`` MiB each is built, then timed: ``backup create``, ``backup verify``,
``backup restore`` after the database is dropped and the store deleted, and the floor
(``pg_dump -Fc`` and ``pg_restore --single-transaction`` of the same database). Results are
printed as a Markdown table; docs/operations.md quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from armillary.app import create_app
from armillary.cli import backup as backup_cli
from armillary.kit.backup import verify
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.migrations.runner import upgrade

ADMIN = ("admin@bench.dev", "bench-admin-password-1")


def csv_of(mib: int) -> bytes:
    row = b"".join(f"{i},{secrets.token_hex(20)}\n".encode() for i in range(1000))
    out = b"id,value\n"
    while len(out) < mib * 1024 * 1024:
        out += row
    return out


async def populate(settings: Settings, storage: StorageSettings, datasets: int, mib: int) -> int:
    app = create_app(settings, configure_logs=False, storage_settings=storage)
    transport = httpx.ASGITransport(app=app)
    total = 0
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as c,
    ):
        login = await c.post(
            "/api/v1/auth/token", data={"username": ADMIN[0], "password": ADMIN[1]}
        )
        auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
        await c.post("/api/v1/projects", json={"slug": "bench", "name": "Bench"}, headers=auth)
        for n in range(datasets):
            name = f"d{n}"
            await c.post("/api/v1/projects/bench/datasets", json={"name": name}, headers=auth)
            body = csv_of(mib)
            total += len(body)
            answer = await c.post(
                f"/api/v1/projects/bench/datasets/{name}/versions",
                files={"file": (f"{name}.csv", body, "text/csv")},
                data={"format": "csv"},
                headers=auth,
            )
            answer.raise_for_status()
    return total


def timed(label: str, results: dict[str, float], action: object) -> None:
    started = time.perf_counter()
    action()  # type: ignore[operator]
    results[label] = time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=4)
    parser.add_argument("--mib", type=int, default=64)
    options = parser.parse_args()
    name = f"armillary_bench_backup_{secrets.token_hex(4)}"
    admin_dsn = "postgresql://postgres@127.0.0.1:5432/postgres"
    connection = await asyncpg.connect(admin_dsn)
    await connection.execute(f'CREATE DATABASE "{name}"')
    work = Path(tempfile.mkdtemp(prefix="armillary-bench-backup-"))
    os.environ["DO_NOT_TRACK"] = "1"
    try:
        settings = Settings(
            home=work / "home",
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
            secret_key="bench-" + "s" * 40,  # type: ignore[arg-type]
            admin_email=ADMIN[0],
            admin_password=ADMIN[1],  # type: ignore[arg-type]
            log_json=True,
            log_level="WARNING",
            backup_checkpoint_dir=work / "checkpoints",
        )
        storage = StorageSettings()
        await asyncio.to_thread(upgrade, settings)
        data_bytes = await populate(settings, storage, options.datasets, options.mib)
        results: dict[str, float] = {}
        target = work / "backup"
        started = time.perf_counter()
        await backup_cli.create_backup(settings, storage, target)
        results["armillary backup create"] = time.perf_counter() - started
        timed("armillary backup verify", results, lambda: verify(target))
        dump = work / "floor.dump"
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        timed(
            "pg_dump -Fc (floor)",
            results,
            lambda: subprocess.run(["pg_dump", "-Fc", "-f", str(dump), url], check=True),
        )
        await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        shutil.rmtree(storage.resolved_local_root(settings.home))
        started = time.perf_counter()
        await backup_cli.restore_backup(settings, storage, target)
        results["armillary backup restore"] = time.perf_counter() - started
        timed(
            "pg_restore --single-transaction (floor)",
            results,
            lambda: subprocess.run(
                [
                    "pg_restore",
                    "--clean",
                    "--if-exists",
                    "--single-transaction",
                    "-d",
                    url,
                    str(dump),
                ],
                check=True,
            ),
        )
        print(
            f"Data: {options.datasets} datasets x {options.mib} MiB = {data_bytes / 2**20:.0f} MiB of objects\n"
        )
        print("| step | seconds |\n|---|---|")
        for label, seconds in results.items():
            print(f"| {label} | {seconds:.2f} |")
    finally:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
