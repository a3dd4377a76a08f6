"""Point-in-time recovery between two changes: a private PostgreSQL cluster archives its WAL
through pgBackRest (an encrypted repository), the objects live in a versioned S3 bucket on
moto. The database is restored to a moment T' between two changes with pgBackRest, then
`armillary backup restore-point` brings the objects, the audit checkpoint and the cache to T'.
The first change is there, the second is gone, and no row points at a missing object."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from asgi_lifespan import LifespanManager

from armillary.app import create_app
from armillary.cli import backup as backup_cli
from armillary.cli.doctor import check
from armillary.kit.pitr import Repository, archive_settings, pgbackrest_config, pgbackrest_target
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.admin import init_bucket
from armillary.migrations.runner import upgrade
from armillary.workflows.scheduling.signals import asyncpg_dsn
from tests.conftest import REDIS_URL, Api, auth, client_for, make_settings
from tests.faults.private_services import PrivatePostgres, _as_postgres, private_postgres
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY

STANZA = "armillary"

pytestmark = pytest.mark.skipif(shutil.which("pgbackrest") is None, reason="needs pgbackrest")


def pgbackrest(config: Path, *args: str) -> None:
    done = subprocess.run(
        _as_postgres(["pgbackrest", f"--config={config}", f"--stanza={STANZA}", *args]),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@asynccontextmanager
async def platform(settings: Settings, storage: StorageSettings) -> AsyncIterator[Api]:
    application = create_app(settings, configure_logs=False, storage_settings=storage)
    async with LifespanManager(application, startup_timeout=60), client_for(application) as c:
        yield Api(c)


async def sql(server: PrivatePostgres, statement: str) -> object:
    connection = await asyncpg.connect(asyncpg_dsn(server.url("armillary")))
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


async def upload(api: Api, token: str, base: str, body: bytes) -> dict[str, object]:
    response = await api.client.post(
        f"{base}/datasets/sales/versions",
        files={"file": ("sales.csv", body, "text/csv")},
        data={"format": "csv"},
        headers=auth(token),
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_point_in_time_restore_between_two_changes(moto_endpoint: str) -> None:
    server = private_postgres()
    work = Path(tempfile.mkdtemp(prefix="armillary-pitr-"))
    for directory in (work, work / "log", work / "lock", work / "spool"):
        directory.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
    try:
        config = work / "pgbackrest.conf"
        config.write_text(
            pgbackrest_config(
                stanza=STANZA,
                pg_data=server.data,
                pg_port=server.port,
                pg_socket_dir=server.root,
                repo=Repository(path=str(work / "repo")),
                cipher_pass="c" * 40,
                work_dir=work,
            )
        )
        with (server.data / "postgresql.conf").open("a") as conf:
            for name, value in archive_settings(config, STANZA).items():
                conf.write(f"{name} = '{value}'\n")
        server.stop()
        server.start()
        server.create_database("armillary")
        home = work / "home"
        settings = make_settings(home, database_url=server.url("armillary"), redis_url=REDIS_URL)
        await asyncio.to_thread(upgrade, settings)
        storage = StorageSettings(
            backend="s3",
            s3_bucket=f"armillary-pitr-{uuid.uuid4().hex[:12]}",
            s3_endpoint_url=moto_endpoint,
            s3_region=REGION,
            s3_access_key_id=ACCESS_KEY,
            s3_secret_access_key=SECRET_KEY,  # type: ignore[arg-type]
            s3_allow_http=True,
        )
        await asyncio.to_thread(init_bucket, storage)
        pgbackrest(config, "stanza-create")
        pgbackrest(config, "backup", "--type=full")

        async with platform(settings, storage) as api:
            admin = await api.admin_token()
            user = await api.create_user(admin, "data_scientist")
            slug = (await api.create_project(user["token"]))["slug"]
            base = f"/api/v1/projects/{slug}"
            created = await api.client.post(
                f"{base}/datasets", json={"name": "sales"}, headers=auth(user["token"])
            )
            assert created.status_code == 201, created.text
            first = await upload(api, user["token"], base, b"a\n1\n")
            # S3 keeps times to the second: the moment is a clear second from both changes.
            await asyncio.sleep(1.5)
            moment = await sql(server, "SELECT now()")
            await asyncio.sleep(1.5)
            await upload(api, user["token"], base, b"a\n2\n")
            later = await api.create_user(admin, "user")
        # Every WAL segment up to now reaches the repository.
        pgbackrest(config, "check")

        server.stop()
        pgbackrest(
            config,
            "restore",
            "--delta",
            "--type=time",
            f"--target={pgbackrest_target(moment)}",  # type: ignore[arg-type]
            "--target-action=promote",
        )
        server.start()
        for _ in range(100):
            if not await sql(server, "SELECT pg_is_in_recovery()"):
                break
            await asyncio.sleep(0.1)
        counts = await backup_cli.restore_point(settings, storage, moment)  # type: ignore[arg-type]
        assert counts["deleted"] >= 1  # the second upload's object

        async with platform(settings, storage) as api:
            admin = await api.admin_token()
            token = await api.token(user["email"], user["password"])
            versions = (
                await api.client.get(f"{base}/datasets/sales/versions", headers=auth(token))
            ).json()
            assert [v["sha256"] for v in versions["items"]] == [first["sha256"]]
            users = (await api.client.get("/api/v1/users?limit=100", headers=auth(admin))).json()
            emails = {u["email"] for u in users["items"]}
            assert user["email"] in emails
            assert later["email"] not in emails
            report = (await api.client.get("/api/v1/audit/verify", headers=auth(admin))).json()
            assert report["ok"], report
        doctor = await check(settings, storage, repair=False, grace=timedelta(0))
        assert doctor["missing"] == []
        assert doctor["orphans"] == []
    finally:
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
