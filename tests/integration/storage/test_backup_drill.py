"""The restore drill: users, a dataset, a job, a model and a deployment; a backup; more
changes; the database and the object store destroyed; a restore. Afterwards the audit chain
verifies, every dataset's SHA-256 matches, the model serves the same predictions, no row
points at a missing object, an alert channel's secrets still decrypt, and nothing changed
after the backup's point survives. Run on PostgreSQL (a database of its own on the shared
server) and on the embedded SQLite shape, whose whole home directory is lost (platform secret
included) and which is driven through the `armillary backup` command line. Then the audit
checkpoint kept apart: a backup whose chain ends before it is refused unless accepted."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import stat
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url
from tests.conftest import REDIS_URL, Api, auth, client_for, make_settings, xdist_index
from tests.integration.serving.predict_support import SIGNATURE, features, instances, model_bytes
from tests.integration.storage.conftest import S3SettingsFactory
from typer.testing import CliRunner, Result

from armillary.app import create_app
from armillary.cli import backup as backup_cli
from armillary.cli.admin import verify_audit
from armillary.cli.doctor import check
from armillary.cli.main import app as cli_app
from armillary.kit.backup import MANIFEST, BackupError, list_backups, verify
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.admin import init_bucket, s3_client
from armillary.migrations.runner import upgrade
from armillary.workflows.settings import WorkflowSettings

CSV = b"a,b\n1,2\n3,4\n"
CSV_LATER = b"a,b\n5,6\n"
SPEC: dict[str, Any] = {"name": "nightly", "tasks": [{"name": "fit", "type": "noop"}]}
WEBHOOK_SECRET = "whsec-drill-" + "w" * 24
# Test messages go to a receiver on 127.0.0.1; the delivery loop stays off.
ALERTS = WorkflowSettings(alert_delivery_enabled=False, alert_allow_private_targets=True)


class Hook:
    """A webhook receiver on 127.0.0.1 that records what it was sent."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hook.received.append((dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.server.shutdown()


@asynccontextmanager
async def platform(settings: Settings, storage: StorageSettings) -> AsyncIterator[Api]:
    application = create_app(
        settings, configure_logs=False, storage_settings=storage, workflow_settings=ALERTS
    )
    async with LifespanManager(application, startup_timeout=60), client_for(application) as c:
        yield Api(c)


@dataclass
class World:
    admin: str
    user: dict[str, Any]
    slug: str
    dataset_sha: str
    job_id: str
    key: dict[str, str]
    predictions: list[Any]
    channel_id: str

    @property
    def base(self) -> str:
        return f"/api/v1/projects/{self.slug}"


async def build_world(api: Api, hook_url: str) -> World:
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    token = auth(user["token"])
    slug = (await api.create_project(user["token"]))["slug"]
    base = f"/api/v1/projects/{slug}"
    c = api.client
    assert (await c.post(f"{base}/datasets", json={"name": "sales"}, headers=token)).is_success
    uploaded = await c.post(
        f"{base}/datasets/sales/versions",
        files={"file": ("sales.csv", CSV, "text/csv")},
        data={"format": "csv"},
        headers=token,
    )
    assert uploaded.status_code == 201, uploaded.text
    assert (await c.post(f"{base}/workflows", json=SPEC, headers=token)).status_code == 201
    job = await c.post(f"{base}/workflows/nightly/jobs", json={}, headers=token)
    assert job.status_code == 201, job.text
    assert (await c.post(f"{base}/models", json={"name": "churn"}, headers=token)).is_success
    model = await c.post(
        f"{base}/models/churn/versions/upload",
        files={"file": ("model.onnx", model_bytes("good"), "application/octet-stream")},
        data={"signature": json.dumps(SIGNATURE)},
        headers=token,
    )
    assert model.status_code == 201, model.text
    deployment = {
        "name": "churn-api",
        "routing": {"mode": "random"},
        "variants": [{"name": "main", "model": "churn", "version": 1, "weight": 1}],
    }
    assert (await c.post(f"{base}/deployments", json=deployment, headers=token)).is_success
    created = await c.post(
        f"{base}/deployments/churn-api/keys", json={"name": "app"}, headers=token
    )
    key = {"X-API-Key": str(created.json()["key"])}
    predictions = await predict(api, base, key)
    # Its signing secret is encrypted under the platform secret.
    channel = await c.post(
        f"{base}/alerts/channels",
        json={
            "name": "ops",
            "kind": "webhook",
            "config": {"url": hook_url, "signing_secret": WEBHOOK_SECRET},
        },
        headers=token,
    )
    assert channel.status_code == 201, channel.text
    return World(
        admin,
        user,
        slug,
        str(uploaded.json()["sha256"]),
        str(job.json()["id"]),
        key,
        predictions,
        str(channel.json()["id"]),
    )


async def predict(api: Api, base: str, key: dict[str, str]) -> list[Any]:
    body = {"instances": instances(features(10, 3))}
    response = await api.client.post(
        f"{base}/deployments/churn-api/predict", json=body, headers=key
    )
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


async def change_after_backup(api: Api, world: World) -> str:
    """Changes after the backup's point: a user, a dataset version, a model version."""
    later = await api.create_user(world.admin, "user")
    token = auth(world.user["token"])
    uploaded = await api.client.post(
        f"{world.base}/datasets/sales/versions",
        files={"file": ("sales.csv", CSV_LATER, "text/csv")},
        data={"format": "csv"},
        headers=token,
    )
    assert uploaded.status_code == 201, uploaded.text
    model = await api.client.post(
        f"{world.base}/models/churn/versions/upload",
        files={"file": ("model.onnx", model_bytes("inverse"), "application/octet-stream")},
        data={"signature": json.dumps(SIGNATURE)},
        headers=token,
    )
    assert model.status_code == 201, model.text
    return str(later["email"])


async def check_restored(api: Api, world: World, later_email: str, hook: Hook) -> None:
    c = api.client
    token = auth(await api.token(world.user["email"], world.user["password"]))
    report = (await c.get("/api/v1/audit/verify", headers=auth(world.admin))).json()
    assert report["ok"], report
    versions = (await c.get(f"{world.base}/datasets/sales/versions", headers=token)).json()
    assert [v["sha256"] for v in versions["items"]] == [world.dataset_sha]
    content = await c.get(f"{world.base}/datasets/sales/versions/1/content", headers=token)
    if content.status_code == 307:  # S3: a presigned link to the restored object
        async with httpx.AsyncClient() as direct:
            content = await direct.get(content.headers["location"])
    assert content.status_code == 200, content.text
    assert content.content == CSV
    job = await c.get(f"/api/v1/jobs/{world.job_id}", headers=token)
    assert job.status_code == 200, job.text
    models = (await c.get(f"{world.base}/models/churn/versions", headers=token)).json()
    assert [v["version"] for v in models["items"]] == [1]
    assert await predict(api, world.base, world.key) == world.predictions
    users = (await c.get("/api/v1/users?limit=100", headers=auth(world.admin))).json()
    assert later_email not in {u["email"] for u in users["items"]}
    # The channel's secrets decrypt: the message goes out signed with the same secret.
    sent = await c.post(f"{world.base}/alerts/channels/{world.channel_id}/test", headers=token)
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "sent", sent.json()
    headers, raw = hook.received[-1]
    signed = f"{headers['X-Armillary-Timestamp']}.".encode() + raw
    expected = hmac.new(WEBHOOK_SECRET.encode(), signed, hashlib.sha256).hexdigest()
    assert headers["X-Armillary-Signature"] == f"sha256={expected}"


def destroy_store(settings: Settings, storage: StorageSettings) -> None:
    if storage.backend == "local":
        shutil.rmtree(storage.resolved_local_root(settings.home))
        return
    client = s3_client(storage)
    bucket = storage.bucket
    listed = client.list_object_versions(Bucket=bucket)
    for item in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]:
        client.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])
    client.delete_bucket(Bucket=bucket)


class Backups(Protocol):
    """`armillary backup`, called one way or another."""

    async def create(self) -> dict[str, Any]: ...
    async def listed(self) -> list[Path]: ...
    async def verify(self, directory: Path) -> bool: ...
    async def restore(self, directory: Path, *, accept: bool = False) -> dict[str, Any]: ...


@dataclass
class DirectBackups:
    """The commands' functions, called in this process."""

    settings: Settings
    storage: StorageSettings
    root: Path

    async def create(self) -> dict[str, Any]:
        return await backup_cli.create_backup(self.settings, self.storage, self.root / "first")

    async def listed(self) -> list[Path]:
        return [path for path, _ in list_backups(self.root)]

    async def verify(self, directory: Path) -> bool:
        return verify(directory).ok

    async def restore(self, directory: Path, *, accept: bool = False) -> dict[str, Any]:
        return await backup_cli.restore_backup(
            self.settings, self.storage, directory, accept_truncation=accept
        )


@dataclass
class CommandLineBackups:
    """`armillary backup ...` through its command line, configured by the environment alone
    (typer's runner, in a thread: each command runs its own event loop)."""

    env: dict[str, str | None]

    async def invoke(self, *args: str) -> Result:
        runner = CliRunner()
        return await asyncio.to_thread(runner.invoke, cli_app, ["backup", *args], env=self.env)

    async def create(self) -> dict[str, Any]:
        done = await self.invoke("create", "-o", "json")  # under ARMILLARY_BACKUP_DIR
        assert done.exit_code == 0, done.output
        return dict(json.loads(done.stdout))

    async def listed(self) -> list[Path]:
        done = await self.invoke("list", "--output", "json")  # no ROOT: ARMILLARY_BACKUP_DIR
        assert done.exit_code == 0, done.output
        return [Path(row["directory"]) for row in json.loads(done.stdout)]

    async def verify(self, directory: Path) -> bool:
        done = await self.invoke("verify", str(directory))
        assert done.exit_code in (0, 1), done.output
        return done.exit_code == 0

    async def restore(self, directory: Path, *, accept: bool = False) -> dict[str, Any]:
        flags = ["--accept-truncation"] if accept else []
        done = await self.invoke("restore", str(directory), "--yes", "--output", "json", *flags)
        if done.exit_code != 0:
            raise BackupError(done.stderr)
        return dict(json.loads(done.stdout))


async def drill(
    settings: Settings, storage: StorageSettings, backups: Backups, hook: Hook, destroy: Any
) -> None:
    """``destroy`` removes the database and every object (and version) of the store."""
    async with platform(settings, storage) as api:
        world = await build_world(api, hook.url)
        world.admin = await api.admin_token()
    summary = await backups.create()
    target = Path(summary["directory"])
    assert summary["objects"] >= 2  # the dataset version and the model file at least
    assert summary["missing_objects"] == 0
    assert summary["audit_checkpoint"]
    assert await backups.verify(target)
    assert await backups.listed() == [target]
    # The audit checkpoint is kept apart from the backup, never inside it.
    assert not any(path.name.endswith(".audit-checkpoint.json") for path in target.rglob("*"))
    assert settings.backup_checkpoint_dir is not None
    assert len(list(settings.backup_checkpoint_dir.glob("*.audit-checkpoint.json"))) == 1

    async with platform(settings, storage) as api:
        later_email = await change_after_backup(api, world)

    await destroy()
    restored = await backups.restore(target)
    assert restored["objects_restored"] == summary["objects"]
    assert restored["audit_truncation_accepted"] is None

    async with platform(settings, storage) as api:
        world.admin = await api.admin_token()
        await check_restored(api, world, later_email, hook)
    doctor = await check(settings, storage, repair=False, grace=timedelta(0))
    assert doctor["missing"] == []
    assert doctor["orphans"] == []

    # A backup whose files were changed does not verify, and is not restored.
    dump = next(p for p in target.iterdir() if p.name.startswith("database."))
    dump.write_bytes(dump.read_bytes()[:-10] + b"0123456789")
    assert not await backups.verify(target)
    with pytest.raises(BackupError, match="does not verify"):
        await backups.restore(target)


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_restore_drill_on_postgresql(
    tmp_path: Path,
    pg_url: str,
    backend: str,
    s3_settings_factory: S3SettingsFactory,
    hook: Hook,
) -> None:
    name = f"armillary_drill_{xdist_index()}_{uuid.uuid4().hex[:8]}"
    url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    admin_dsn = make_url(pg_url).set(drivername="postgresql", database="postgres")
    admin = admin_dsn.render_as_string(hide_password=False)

    async def sql(statement: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    await sql(f'CREATE DATABASE "{name}"')
    try:
        settings = make_settings(
            tmp_path / "home",
            database_url=url,
            redis_url=REDIS_URL,
            backup_checkpoint_dir=tmp_path / "checkpoints",
        )
        await asyncio.to_thread(upgrade, settings)
        storage = StorageSettings() if backend == "local" else s3_settings_factory()
        if backend == "s3":
            await asyncio.to_thread(init_bucket, storage)

        async def destroy() -> None:
            await sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            await asyncio.to_thread(destroy_store, settings, storage)

        backups = DirectBackups(settings, storage, tmp_path / "backups")
        await drill(settings, storage, backups, hook, destroy)
    finally:
        await sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.sqlite
async def test_restore_drill_on_the_embedded_shape(tmp_path: Path, hook: Hook) -> None:
    """The whole home directory is lost, its platform secret (generated there: none is
    configured) with it; the backup brings it back, through the command line."""
    home = tmp_path / "home"
    settings = make_settings(
        home,
        secret_key=None,
        backup_dir=tmp_path / "backups",
        backup_checkpoint_dir=tmp_path / "checkpoints",
    )
    await asyncio.to_thread(upgrade, settings)
    storage = StorageSettings()
    env: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("ARMILLARY_")
    }
    env.update(
        ARMILLARY_HOME=str(home),
        ARMILLARY_BACKUP_DIR=str(settings.backup_dir),
        ARMILLARY_BACKUP_CHECKPOINT_DIR=str(settings.backup_checkpoint_dir),
    )
    secret = settings.resolved_secret_key()
    assert stat.S_IMODE((home / "secret.key").stat().st_mode) == 0o600

    async def destroy() -> None:
        shutil.rmtree(home)

    await drill(settings, storage, CommandLineBackups(env), hook, destroy)
    # The platform secret came back as it was, still private.
    assert (home / "secret.key").read_text().strip() == secret
    assert stat.S_IMODE((home / "secret.key").stat().st_mode) == 0o600


@pytest.mark.sqlite
async def test_the_home_directorys_keys_are_backed_up_but_caches_are_not(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    settings = make_settings(home, secret_key=None)
    await asyncio.to_thread(upgrade, settings)
    settings.resolved_secret_key()
    keys = home / "service-keys"
    keys.mkdir()
    (keys / "data.key").write_bytes(b"private")
    (keys / "data.key").chmod(0o600)
    (keys / "data.pub").write_bytes(b"public")
    (keys / "data.pub").chmod(0o644)
    for scratch in ("work/attempt/out.txt", "serving/model.onnx"):
        (home / scratch).parent.mkdir(parents=True)
        (home / scratch).write_text("rebuilt on its own")
    (home / "elsewhere").symlink_to(tmp_path)
    (home / "backups" / "older").mkdir(parents=True)  # ARMILLARY_BACKUP_DIR's earlier ones
    (home / "backups" / "older" / MANIFEST).write_text("{}")
    settings.backup_dir = home / "backups"

    summary = await backup_cli.create_backup(settings, StorageSettings(), tmp_path / "backup")
    manifest = json.loads((tmp_path / "backup" / MANIFEST).read_text())
    modes = {entry["path"]: entry["mode"] for entry in manifest["home_files"]}
    assert modes == {
        "secret.key": 0o600,
        "service-keys/data.key": 0o600,
        "service-keys/data.pub": 0o644,
    }
    assert summary["home_files"] == 3

    # A backed-up key that changed is found by verify.
    (tmp_path / "backup" / "home" / "service-keys" / "data.key").write_bytes(b"other")
    report = verify(tmp_path / "backup")
    assert report.problems == ["home file service-keys/data.key was changed"]
    # A manifest that would write outside the home directory is not read at all.
    manifest["home_files"][0]["path"] = "../outside"
    (tmp_path / "backup" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="outside the home directory"):
        verify(tmp_path / "backup")


def test_the_command_line_needs_a_backup_directory_when_none_is_configured(
    tmp_path: Path,
) -> None:
    env: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("ARMILLARY_")
    }
    env["ARMILLARY_HOME"] = str(tmp_path / "home")
    for args in (["list"], ["create"]):
        done = CliRunner().invoke(cli_app, ["backup", *args], env=env)
        assert done.exit_code == 2, done.output
        assert "ARMILLARY_BACKUP_DIR" in done.stderr


def test_a_backup_into_a_directory_that_is_not_empty_is_refused(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        asyncio.run(
            backup_cli.create_backup(settings_factory(), StorageSettings(), tmp_path / "taken")
        )


# --- the audit checkpoint kept apart ----------------------------------------------------------


def sqlite_copy(source: Path, target: Path) -> None:
    with (
        contextlib.closing(sqlite3.connect(source)) as reader,
        contextlib.closing(sqlite3.connect(target)) as writer,
    ):
        reader.backup(writer)


async def add_user(settings: Settings) -> None:
    async with platform(settings, StorageSettings()) as api:
        await api.create_user(await api.admin_token(), "user")


@pytest.mark.sqlite
async def test_a_backup_of_a_rolled_back_audit_log_is_refused_unless_accepted(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    settings = make_settings(home, backup_checkpoint_dir=tmp_path / "checkpoints")
    await asyncio.to_thread(upgrade, settings)
    storage = StorageSettings()
    await add_user(settings)
    sqlite_copy(home / "armillary.db", tmp_path / "earlier.db")
    await add_user(settings)
    # The database is rolled back behind the audit checkpoint outside it, then backed up.
    live = home / "audit" / "checkpoint.json"
    ahead = json.loads(live.read_text())
    for path in home.glob("armillary.db*"):
        path.unlink()
    sqlite_copy(tmp_path / "earlier.db", home / "armillary.db")
    target = tmp_path / "backup"
    summary = await backup_cli.create_backup(settings, storage, target)
    assert summary["audit_checkpoint"]

    # Refused before anything is replaced: the outside checkpoint still holds the later head.
    with pytest.raises(BackupError, match="truncated or rolled back before the backup"):
        await backup_cli.restore_backup(settings, storage, target)
    assert json.loads(live.read_text())["seq"] == ahead["seq"]

    # A manifest rewritten to hide it: the restored chain is checked against the checkpoint
    # kept apart, the restore fails loudly and the outside checkpoint keeps the evidence.
    manifest = json.loads((target / MANIFEST).read_text())
    manifest["audit_head"] = {"seq": ahead["seq"], "hash": ahead["hash"]}
    (target / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BackupError, match="does not verify against the checkpoint kept apart"):
        await backup_cli.restore_backup(settings, storage, target)
    report = await verify_audit(settings)
    assert not report.ok
    assert "truncated" in report.problems[0]

    # Accepted: restored, the checkpoint set from the restored chain, which then verifies.
    restored = await backup_cli.restore_backup(settings, storage, target, accept_truncation=True)
    assert restored["audit_truncation_accepted"]
    assert (await verify_audit(settings)).ok
    assert json.loads(live.read_text())["seq"] < ahead["seq"]


@pytest.mark.sqlite
async def test_a_backup_that_reaches_its_checkpoint_restores_and_verifies(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", backup_checkpoint_dir=tmp_path / "checkpoints")
    await asyncio.to_thread(upgrade, settings)
    storage = StorageSettings()
    await add_user(settings)
    target = tmp_path / "backup"
    await backup_cli.create_backup(settings, storage, target)
    await add_user(settings)  # the live checkpoint moves past the backup's point

    restored = await backup_cli.restore_backup(settings, storage, target)
    assert restored["audit_truncation_accepted"] is None
    assert (await verify_audit(settings)).ok

    # Without the checkpoint kept apart, the chain cannot be checked: refused unless accepted.
    for kept in (tmp_path / "checkpoints").iterdir():
        kept.unlink()
    with pytest.raises(BackupError, match=r"audit checkpoint .* is not in"):
        await backup_cli.restore_backup(settings, storage, target)
    restored = await backup_cli.restore_backup(settings, storage, target, accept_truncation=True)
    assert restored["audit_truncation_accepted"]


def test_the_audit_checkpoint_must_be_backed_up_apart(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory()
    checkpoint = settings.home / "audit" / "checkpoint.json"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text('{"seq": 1, "hash": "h", "signature": "s"}')
    with pytest.raises(BackupError, match="ARMILLARY_BACKUP_CHECKPOINT_DIR"):
        asyncio.run(backup_cli.create_backup(settings, StorageSettings(), tmp_path / "a"))
    for inside in (tmp_path / "b", tmp_path / "b" / "evidence", tmp_path):
        with pytest.raises(BackupError, match="apart from the backup's"):
            asyncio.run(
                backup_cli.create_backup(
                    settings, StorageSettings(), tmp_path / "b", checkpoint_output=inside
                )
            )
