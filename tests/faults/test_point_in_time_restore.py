"""Point-in-time recovery between two changes: a private PostgreSQL cluster archives its WAL
through pgBackRest to an encrypted repository in an S3 bucket (moto behind nginx for TLS, its
certificate from a local CA), the objects live in a versioned S3 bucket on moto. The database
is restored to a moment T' between two changes with pgBackRest, then
`armillary backup restore-point` brings the objects, the audit checkpoint and the cache to T'.
The first change is there, the second is gone, and no row points at a missing object."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import asyncpg
import boto3
import pytest
import trustme
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
from tests.integration.workflows.engine import free_port
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY

STANZA = "armillary"

pytestmark = pytest.mark.skipif(
    shutil.which("pgbackrest") is None or shutil.which("nginx") is None,
    reason="needs pgbackrest and nginx (scripts/ensure-services.sh installs both)",
)


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


@contextlib.contextmanager
def s3_repository(work: Path) -> Iterator[Repository]:
    """An S3 bucket for pgBackRest's repository on a moto server speaking HTTPS, and the
    repository settings that reach it (the CA file readable by PostgreSQL's user)."""
    ca = trustme.CA()
    issued = ca.issue_cert("localhost")
    ca_file, cert, key = work / "repo-ca.pem", work / "repo-cert.pem", work / "repo-key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    issued.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    moto_port, port = free_port(), free_port()
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # pgBackRest's OpenSSL 3 refuses a server that closes without close_notify (moto's own
    # TLS does): nginx terminates TLS in front of it, as a real S3 endpoint would.
    (work / "nginx").mkdir()
    conf = work / "nginx" / "nginx.conf"
    conf.write_text(
        NGINX.format(root=work / "nginx", port=port, moto=moto_port, cert=cert, key=key)
    )
    nginx = subprocess.Popen(
        ["nginx", "-c", str(conf), "-p", str(work / "nginx")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes = (moto, nginx)
    try:
        client = boto3.client(
            "s3",
            endpoint_url=f"https://localhost:{port}",
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            verify=str(ca_file),
        )
        for _ in range(100):
            try:
                client.create_bucket(Bucket="pitr-repository")
                break
            except Exception:
                time.sleep(0.1)
        yield Repository(
            path="/pgbackrest",
            s3_bucket="pitr-repository",
            s3_endpoint="localhost",
            s3_region=REGION,
            s3_key_type="shared",
            s3_key=ACCESS_KEY,
            s3_key_secret=SECRET_KEY,
            s3_uri_style="path",
            s3_port=port,
            s3_ca_file=ca_file,
        )
    finally:
        for process in processes:
            process.kill()
            process.wait()


NGINX = """daemon off;
user root;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{}}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  server {{
    listen 127.0.0.1:{port} ssl;
    server_name localhost;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    client_max_body_size 0;
    location / {{
      proxy_pass http://127.0.0.1:{moto};
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_request_buffering off;
      proxy_buffering off;
    }}
  }}
}}
"""


async def test_point_in_time_restore_between_two_changes(moto_endpoint: str) -> None:
    server = private_postgres()
    work = Path(tempfile.mkdtemp(prefix="armillary-pitr-"))
    for directory in (work, work / "log", work / "lock", work / "spool"):
        directory.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
    repository = s3_repository(work)
    try:
        config = work / "pgbackrest.conf"
        config.write_text(
            pgbackrest_config(
                stanza=STANZA,
                pg_data=server.data,
                pg_port=server.port,
                pg_socket_dir=server.root,
                repo=repository.__enter__(),
                cipher_pass="c" * 40,
                work_dir=work,
            )
        )
        for path in work.glob("repo-*.pem"):
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
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
        repository.__exit__(None, None, None)
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
