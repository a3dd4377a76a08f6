"""The restore drill: users, a dataset, a job, a model and a deployment; a backup; more
changes; the database and the object store destroyed; a restore. Afterwards the audit chain
verifies, every dataset's SHA-256 matches, the model serves the same predictions, no row
points at a missing object, and nothing changed after the backup's point survives. Run on
PostgreSQL (a database of its own on the shared server) and on the embedded SQLite shape."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy.engine import make_url
from tests.conftest import REDIS_URL, Api, auth, client_for, make_settings, xdist_index
from tests.integration.serving.predict_support import SIGNATURE, features, instances, model_bytes
from tests.integration.storage.conftest import S3SettingsFactory

from armillary.app import create_app
from armillary.cli import backup as backup_cli
from armillary.cli.doctor import check
from armillary.kit.backup import BackupError, list_backups, verify
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.admin import init_bucket, s3_client
from armillary.migrations.runner import upgrade

CSV = b"a,b\n1,2\n3,4\n"
CSV_LATER = b"a,b\n5,6\n"
SPEC: dict[str, Any] = {"name": "nightly", "tasks": [{"name": "fit", "type": "noop"}]}


@asynccontextmanager
async def platform(settings: Settings, storage: StorageSettings) -> AsyncIterator[Api]:
    application = create_app(settings, configure_logs=False, storage_settings=storage)
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

    @property
    def base(self) -> str:
        return f"/api/v1/projects/{self.slug}"


async def build_world(api: Api) -> World:
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
    return World(
        admin,
        user,
        slug,
        str(uploaded.json()["sha256"]),
        str(job.json()["id"]),
        key,
        predictions,
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


async def check_restored(api: Api, world: World, later_email: str) -> None:
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


async def drill(settings: Settings, storage: StorageSettings, tmp: Path, destroy: Any) -> None:
    """``destroy`` removes the database and every object (and version) of the store."""
    async with platform(settings, storage) as api:
        world = await build_world(api)
        world.admin = await api.admin_token()
    target = tmp / "backups" / "first"
    summary = await backup_cli.create_backup(settings, storage, target)
    assert summary["objects"] >= 2  # the dataset version and the model file at least
    assert summary["missing_objects"] == 0
    assert verify(target).ok
    assert [path for path, _ in list_backups(tmp / "backups")] == [target]

    async with platform(settings, storage) as api:
        later_email = await change_after_backup(api, world)

    await destroy()
    restored = await backup_cli.restore_backup(settings, storage, target)
    assert restored["objects_restored"] == summary["objects"]

    async with platform(settings, storage) as api:
        world.admin = await api.admin_token()
        await check_restored(api, world, later_email)
    doctor = await check(settings, storage, repair=False, grace=timedelta(0))
    assert doctor["missing"] == []
    assert doctor["orphans"] == []

    # A backup whose files were changed does not verify, and is not restored.
    dump = next(p for p in target.iterdir() if p.name.startswith("database."))
    dump.write_bytes(dump.read_bytes()[:-10] + b"0123456789")
    assert not verify(target).ok
    with pytest.raises(BackupError, match="does not verify"):
        await backup_cli.restore_backup(settings, storage, target)


@pytest.mark.parametrize("backend", ["local", "s3"])
async def test_restore_drill_on_postgresql(
    tmp_path: Path, pg_url: str, backend: str, s3_settings_factory: S3SettingsFactory
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
        settings = make_settings(tmp_path / "home", database_url=url, redis_url=REDIS_URL)
        await asyncio.to_thread(upgrade, settings)
        storage = StorageSettings() if backend == "local" else s3_settings_factory()
        if backend == "s3":
            await asyncio.to_thread(init_bucket, storage)

        async def destroy() -> None:
            await sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            await asyncio.to_thread(destroy_store, settings, storage)

        await drill(settings, storage, tmp_path, destroy)
    finally:
        await sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.sqlite
async def test_restore_drill_on_the_embedded_shape(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    await asyncio.to_thread(upgrade, settings)
    storage = StorageSettings()

    async def destroy() -> None:
        for path in settings.home.glob("armillary.db*"):
            path.unlink()
        destroy_store(settings, storage)

    await drill(settings, storage, tmp_path, destroy)


def test_a_backup_into_a_directory_that_is_not_empty_is_refused(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        asyncio.run(
            backup_cli.create_backup(settings_factory(), StorageSettings(), tmp_path / "taken")
        )
