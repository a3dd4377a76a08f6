"""``armillary doctor``: rows whose object is missing are reported, orphans older than the grace
period are reported and (with --repair) deleted, owned and recent objects never are."""

from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from tests.conftest import TEST_SECRET, auth, make_settings
from tests.integration.registry.support import Platform, Scene, register, with_datasets
from typer.testing import CliRunner

from armillary.cli.doctor import check
from armillary.cli.main import app as cli
from armillary.kit.settings import Settings
from armillary.kit.storage import LocalObjectStore, StorageSettings, attempt_artifact_key
from armillary.migrations.runner import upgrade

HOUR = timedelta(hours=1)


def _age(store: LocalObjectStore, key: str, seconds: float) -> None:
    path = store.path_of(key)
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


async def test_doctor_reports_missing_objects_and_repairs_only_old_orphans(
    platform: Platform, db_settings: Settings
) -> None:
    api = platform.api
    user = await api.create_user(await api.admin_token(), "data_scientist")
    scene = Scene(platform, user, await api.create_project(user["token"]))
    created = await platform.client.post(
        scene.base, json={"name": scene.model}, headers=auth(scene.token)
    )
    assert created.status_code == 201
    await with_datasets(scene)
    await register(scene)
    store = platform.registry.store
    assert isinstance(store, LocalObjectStore)
    project_id = uuid.UUID(scene.project["id"])
    old = attempt_artifact_key(project_id, uuid.uuid4(), "train", 1, "stale.bin")
    recent = attempt_artifact_key(project_id, uuid.uuid4(), "train", 1, "in-flight.bin")
    await store.put_bytes(old, b"left behind")
    await store.put_bytes(recent, b"being uploaded")
    _age(store, old, 2 * HOUR.total_seconds())
    # A committed row whose object is gone.
    (lost,) = [k for k in await store.list_keys() if "/datasets/" in k][:1]
    await store.delete(lost)
    storage = StorageSettings(backend="local")

    report = await check(db_settings, storage, repair=False, grace=HOUR)

    assert report["healthy"] is False
    assert [m["key"] for m in report["missing"]] == [lost]
    assert report["missing"][0]["row"].startswith("dataset ")
    orphans = [o["key"] for o in report["orphans"]]
    assert old in orphans
    assert recent not in orphans
    assert report["unowned_within_grace"] >= 1
    owned_before = [k for k in await store.list_keys() if "/models/" in k]
    assert owned_before

    repaired = await check(db_settings, storage, repair=True, grace=HOUR)

    assert old in repaired["repair"]["deleted"]
    assert not await store.exists(old)
    assert await store.exists(recent)
    assert [k for k in await store.list_keys() if "/models/" in k] == owned_before
    assert repaired["healthy"] is False  # the missing object cannot be repaired


@pytest.mark.sqlite
def test_doctor_command_json_and_repair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path / "home", database_url=None, redis_url=None)
    upgrade(settings)
    monkeypatch.setenv("ARMILLARY_HOME", str(settings.home))
    monkeypatch.setenv("ARMILLARY_SECRET_KEY", TEST_SECRET)
    monkeypatch.delenv("ARMILLARY_DATABASE_URL", raising=False)
    monkeypatch.delenv("ARMILLARY_STORAGE_BACKEND", raising=False)
    orphan = f"projects/{uuid.uuid4()}/models/{uuid.uuid4()}/{uuid.uuid4()}/model.onnx"
    path = settings.home / "objects" / orphan
    path.parent.mkdir(parents=True)
    path.write_bytes(b"nobody's")
    runner = CliRunner()

    found = runner.invoke(cli, ["doctor", "--output", "json", "--grace", "0"])
    assert found.exit_code == 1, found.output
    body = json.loads(found.stdout)
    assert [o["key"] for o in body["orphans"]] == [orphan]
    assert body["missing"] == []
    assert path.exists()

    fixed = runner.invoke(cli, ["doctor", "--repair", "--grace", "0"])
    assert fixed.exit_code == 0, fixed.output
    assert "Deleted 1 orphan" in fixed.stdout
    assert not path.exists()
    assert runner.invoke(cli, ["doctor"]).exit_code == 0
