"""The point-in-time restore drill: a private PostgreSQL cluster archives its WAL through
pgBackRest to an encrypted repository in an S3 bucket (moto behind nginx for TLS, its
certificate from a local CA); the objects live in a versioned S3 bucket on moto, which
`armillary backup objects-sync` copies into a backup bucket in another region.

Users, a dataset, a job, a model and a deployment; a full backup; a change; the moment T';
another change. Then the cluster's data directory is deleted and the platform's bucket with
every version in it. pgBackRest restores the database to T' into an empty directory and
`armillary backup restore-point` brings the objects back from the backup bucket as of T',
sets the audit checkpoint and clears the cache: the audit chain verifies, every dataset's
SHA-256 matches, the model serves the same predictions, the first change is there, the
second is gone, and no row points at a missing object."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import asyncpg
import boto3
import httpx
import pytest
import trustme

from armillary.cli import backup as backup_cli
from armillary.cli.doctor import check
from armillary.kit.object_history import backup_settings
from armillary.kit.pitr import (
    Repository,
    archive_conf,
    cipher_pass_conf,
    config_option,
    pgbackrest_config,
    pgbackrest_target,
)
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.admin import init_bucket
from armillary.migrations.runner import upgrade
from armillary.workflows.scheduling.signals import asyncpg_dsn
from tests.conftest import REDIS_URL, Api, auth, make_settings
from tests.faults.private_services import PrivatePostgres, _as_postgres, private_postgres
from tests.integration.storage.test_backup_drill import (  # noqa: F401 - hook is a fixture
    CSV,
    Hook,
    build_world,
    change_after_backup,
    check_restored,
    destroy_store,
    hook,
    platform,
)
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY
from tests.ports import free_port

STANZA = "armillary"

pytestmark = pytest.mark.skipif(
    shutil.which("pgbackrest") is None or shutil.which("nginx") is None,
    reason="needs pgbackrest and nginx (scripts/ensure-services.sh installs both)",
)


def pgbackrest(config: Path, *args: str) -> None:
    done = subprocess.run(
        _as_postgres(["pgbackrest", config_option(config), f"--stanza={STANZA}", *args]),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def sql(server: PrivatePostgres, statement: str) -> object:
    connection = await asyncpg.connect(asyncpg_dsn(server.url("armillary")))
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


async def upload(api: Api, token: str, base: str, name: str, body: bytes) -> dict[str, object]:
    created = await api.client.post(f"{base}/datasets", json={"name": name}, headers=auth(token))
    assert created.status_code == 201, created.text
    response = await api.client.post(
        f"{base}/datasets/{name}/versions",
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


REGIONS = b"region,share\nnorth,0.4\nsouth,0.6\n"
BACKUP_REGION = "eu-west-1"


async def test_point_in_time_restore_from_nothing_but_the_backups(
    moto_endpoint: str,
    hook: Hook,  # noqa: F811 - the fixture imported above
) -> None:
    server = private_postgres()
    work = Path(tempfile.mkdtemp(prefix="armillary-pitr-"))
    for directory in (work, work / "log", work / "lock", work / "spool"):
        directory.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
    repository = s3_repository(work)
    try:
        config = work / "pgbackrest.conf"
        # The rendered file holds no secret: the cipher pass is in conf.d/secrets.conf beside
        # it, which pgbackrest (and the server's archive_command) read too.
        secrets = work / "conf.d" / "secrets.conf"
        secrets.parent.mkdir()
        secrets.write_text(cipher_pass_conf("c" * 40))
        secrets.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(secrets.parent, "postgres", "postgres")
            shutil.chown(secrets, "postgres", "postgres")
        config.write_text(
            pgbackrest_config(
                stanza=STANZA,
                pg_data=server.data,
                pg_port=server.port,
                pg_socket_dir=server.root,
                repo=repository.__enter__(),
                cipher_pass=None,
                work_dir=work,
            )
        )
        assert "c" * 40 not in config.read_text()
        for path in work.glob("repo-*.pem"):
            if os.geteuid() == 0:
                shutil.chown(path, "postgres", "postgres")
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(archive_conf(config, STANZA))
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
        backup = backup_settings(storage, f"{storage.bucket}-backup", BACKUP_REGION)
        await asyncio.to_thread(init_bucket, storage)
        pgbackrest(config, "stanza-create")

        # 1. The scene, and a full backup of it.
        async with platform(settings, storage) as api:
            world = await build_world(api, hook.url)
        pgbackrest(config, "backup", "--type=full")

        # 2. A change, the moment T', another change; the object copy runs between them
        # and after, as its schedule would.
        async with platform(settings, storage) as api:
            world.admin = await api.admin_token()
            early = await api.create_user(world.admin, "user")
            regions = await upload(api, world.user["token"], world.base, "regions", REGIONS)
            first_sync = await asyncio.to_thread(
                backup_cli.sync_objects, storage, backup.bucket, BACKUP_REGION, 35
            )
            assert first_sync["copied"] >= 3  # dataset, model, the regions table
            # S3 keeps times to the second: the moment is a clear second from both changes.
            await asyncio.sleep(1.5)
            moment = await sql(server, "SELECT now()")
            await asyncio.sleep(1.5)
            later_email = await change_after_backup(api, world)
        second_sync = await asyncio.to_thread(
            backup_cli.sync_objects, storage, backup.bucket, BACKUP_REGION, 35
        )
        assert second_sync["already"] == first_sync["copied"] + first_sync["deletions"]
        assert second_sync["copied"] >= 2  # the later dataset version and model version
        # Every WAL segment up to now reaches the repository.
        pgbackrest(config, "check")

        # 3. The disaster: the cluster's data directory and the platform's bucket, every
        # version of every object in it, are gone.
        server.stop()
        shutil.rmtree(server.data)
        await asyncio.to_thread(destroy_store, settings, storage)

        # 4. The restore to T', from the backups alone.
        pgbackrest(
            config,
            "restore",
            "--type=time",
            f"--target={pgbackrest_target(moment)}",  # type: ignore[arg-type]
            "--target-action=promote",
        )
        server.start()
        for _ in range(100):
            if not await sql(server, "SELECT pg_is_in_recovery()"):
                break
            await asyncio.sleep(0.1)
        counts = await backup_cli.restore_point(
            settings,
            storage,
            moment,  # type: ignore[arg-type]
            backup,
        )
        # Dataset, model and regions objects come back; the later ones stay away.
        assert counts["from_backup"] >= 3, counts
        assert counts["reverted"] == 0, counts

        async with platform(settings, storage) as api:
            world.admin = await api.admin_token()
            await check_restored(api, world, later_email, hook)
            assert world.dataset_sha == hashlib.sha256(CSV).hexdigest()
            token = auth(await api.token(world.user["email"], world.user["password"]))
            users = await api.client.get("/api/v1/users?limit=100", headers=auth(world.admin))
            assert early["email"] in {u["email"] for u in users.json()["items"]}
            listed = await api.client.get(f"{world.base}/datasets/regions/versions", headers=token)
            assert [v["sha256"] for v in listed.json()["items"]] == [regions["sha256"]]
            assert regions["sha256"] == hashlib.sha256(REGIONS).hexdigest()
            # The bytes themselves came back from the backup bucket.
            content = await api.client.get(
                f"{world.base}/datasets/regions/versions/1/content", headers=token
            )
            assert content.status_code == 307, content.text  # a presigned link to S3
            async with httpx.AsyncClient() as direct:
                restored = (await direct.get(content.headers["location"])).content
            assert hashlib.sha256(restored).hexdigest() == regions["sha256"]
        doctor = await check(settings, storage, repair=False, grace=timedelta(0))
        assert doctor["missing"] == []
        assert doctor["orphans"] == []
    finally:
        repository.__exit__(None, None, None)
        server.remove()
        shutil.rmtree(work, ignore_errors=True)
