"""What pipelines need from the data service: lineage recorded with an upload (the job from the
job token, never from the client), quality reports per version, presigned links to external
S3 objects in allow-listed buckets, and the typed client other services ask for a version's
columns."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from tests.conftest import auth
from tests.integration.data.support import (
    Platform,
    Scene,
    assert_problem,
    encode,
    known_frame,
    make_scene,
)

from armillary.data.app import create_internal_app
from armillary.data.client import DataClient
from armillary.data.settings import DataSettings
from armillary.kit.errors import Unauthorized
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.admin import s3_client

CONTENT = encode(known_frame(), "csv")
SMALLER = encode(known_frame().head(10), "csv")
COLUMNS = [
    {"name": "id", "dtype": "Int64"},
    {"name": "score", "dtype": "Float64"},
    {"name": "category", "dtype": "String"},
]
REPORT: dict[str, Any] = {
    "passed": True,
    "score": 0.97,
    "rows": 1000,
    "checks": [{"name": "not_null", "column": "id", "passed": True}],
    "suite": "basic",  # extra fields are kept
}


@pytest.fixture
def backend() -> str:
    """The local store unless a test asks for S3 (``parametrize("backend", ["s3"])``)."""
    return "local"


async def job_token(scene: Scene, job_id: uuid.UUID) -> str:
    issued = await scene.platform.app.state.runtime.access.directory.issue_job_token(
        user_id=uuid.UUID(scene.user["id"]),
        project_id=uuid.UUID(scene.project["id"]),
        job_id=job_id,
        ttl_seconds=300,
    )
    return str(issued.token)


async def member(scene: Scene, role: str) -> dict[str, Any]:
    api = scene.platform.api
    user = await api.create_user(await api.admin_token(), "data_scientist")
    response = await scene.platform.client.put(
        f"/api/v1/projects/{scene.project['slug']}/members/{user['id']}",
        json={"role": role},
        headers=auth(scene.token),
    )
    assert response.status_code == 200, response.text
    return user


async def stored_lineage(platform: Platform, version_id: str) -> dict[str, Any]:
    """The lineage column as stored, read around the service code."""
    async with platform.app.state.runtime.db.sessionmaker() as session:
        value = await session.scalar(
            text("SELECT lineage FROM data_dataset_versions WHERE id = :id"),
            {"id": uuid.UUID(version_id)},
        )
    return value if isinstance(value, dict) else json.loads(value)


async def audit_entries(platform: Platform, action: str) -> list[dict[str, Any]]:
    admin = await platform.api.admin_token()
    response = await platform.client.get(
        "/api/v1/audit", params={"action": action, "limit": 100}, headers=auth(admin)
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


# --- lineage ---------------------------------------------------------------------------------


async def test_upload_lineage_is_stored_and_shown(platform: Platform) -> None:
    scene = await make_scene(platform)
    plain = await scene.upload("plain.csv", SMALLER)
    assert plain.status_code == 201, plain.text
    assert plain.json()["lineage"] == {}  # no lineage sent: as before

    sent = {
        "source": "s3://raw/2026/11/events.csv",
        "inputs": [{"dataset": "measurements", "version": 1}],
        "job_id": str(uuid.uuid4()),  # a user cannot claim a job
    }
    response = await scene.upload("data.csv", CONTENT, data={"lineage": json.dumps(sent)})
    assert response.status_code == 201, response.text
    expected = {
        "source": sent["source"],
        "inputs": sent["inputs"],
        "recorded_by": "user",
    }
    assert response.json()["lineage"] == expected
    assert await stored_lineage(platform, response.json()["id"]) == expected

    shown = await platform.client.get(f"{scene.versions}/2", headers=auth(scene.token))
    assert shown.status_code == 200
    assert shown.json()["lineage"] == expected
    listed = await platform.client.get(scene.versions, headers=auth(scene.token))
    assert [v["lineage"] for v in listed.json()["items"]] == [expected, {}]


async def test_job_upload_records_the_job_from_the_token(platform: Platform) -> None:
    scene = await make_scene(platform)
    job_id = uuid.uuid4()
    token = await job_token(scene, job_id)
    forged = {"job_id": str(uuid.uuid4()), "recorded_by": "user", "step": "clean"}
    response = await scene.upload(
        "data.csv", CONTENT, token=token, data={"lineage": json.dumps(forged)}
    )
    assert response.status_code == 201, response.text
    expected = {"job_id": str(job_id), "recorded_by": "job", "step": "clean"}
    assert response.json()["lineage"] == expected
    assert await stored_lineage(platform, response.json()["id"]) == expected

    # Without a lineage field, a job's upload still names the job.
    bare = await scene.upload("smaller.csv", SMALLER, token=token)
    assert bare.status_code == 201, bare.text
    assert bare.json()["lineage"] == {"job_id": str(job_id), "recorded_by": "job"}


@pytest.mark.parametrize(
    ("case", "lineage"),
    [
        ("a list", "[1, 2]"),
        ("a string", '"from somewhere"'),
        ("a number", "42"),
        ("null", "null"),
        ("not JSON", "{source: raw}"),
        ("NaN", '{"score": NaN}'),
        ("deep nesting", '{"a":' * 2500 + "1" + "}" * 2500),
        ("too large", json.dumps({"notes": "x" * (16 * 1024)})),
    ],
)
async def test_bad_lineage_is_refused(platform: Platform, case: str, lineage: str) -> None:
    scene = await make_scene(platform)
    before = await platform.snapshot()
    response = await scene.upload("data.csv", CONTENT, data={"lineage": lineage})
    assert_problem(response, 422, case)
    assert "lineage" in response.json()["detail"]
    assert await platform.snapshot() == before


# --- quality reports -------------------------------------------------------------------------


async def test_quality_reports_latest_and_history(platform: Platform) -> None:
    scene = await make_scene(platform)
    assert (await scene.upload("data.csv", CONTENT)).status_code == 201
    quality = f"{scene.versions}/1/quality"
    c = platform.client

    none_yet = await c.get(quality, headers=auth(scene.token))
    assert_problem(none_yet, 404)
    empty = await c.get(f"{quality}/history", headers=auth(scene.token))
    assert empty.status_code == 200
    assert (empty.json()["items"], empty.json()["total"]) == ([], 0)

    # A job's quality task: the job comes from the token, not from the body.
    job_id = uuid.uuid4()
    token = await job_token(scene, job_id)
    body = {**REPORT, "job_id": str(uuid.uuid4())}
    first = await c.put(
        quality, json=body, headers={**auth(token), "X-Armillary-Task": "check_quality"}
    )
    assert first.status_code == 201, first.text
    stored = first.json()
    assert stored["dataset"] == "measurements"
    assert stored["version"] == 1
    assert stored["job_id"] == str(job_id)
    assert stored["task"] == "check_quality"
    assert (stored["passed"], stored["score"]) == (True, 0.97)
    assert stored["report"]["suite"] == "basic"
    assert stored["report"]["checks"] == REPORT["checks"]
    assert stored["created_by"] == scene.user["id"]

    # A person's later report is the current one; both stay in the history.
    second = await c.put(
        quality,
        json={"passed": False, "score": 0.4, "checks": [{"name": "range", "passed": False}]},
        headers=auth(scene.token),
    )
    assert second.status_code == 201, second.text
    assert (second.json()["job_id"], second.json()["task"]) == (None, None)

    latest = await c.get(quality, headers=auth(scene.token))
    assert latest.status_code == 200
    assert latest.json() == second.json()

    history = await c.get(f"{quality}/history", headers=auth(scene.token))
    assert history.status_code == 200
    page = history.json()
    assert page["total"] == 2
    assert [r["id"] for r in page["items"]] == [second.json()["id"], first.json()["id"]]
    paged = await c.get(
        f"{quality}/history", params={"limit": 1, "offset": 1}, headers=auth(scene.token)
    )
    assert [r["id"] for r in paged.json()["items"]] == [first.json()["id"]]

    # Reports belong to their version: version 2 has none.
    assert (await scene.upload("smaller.csv", SMALLER)).status_code == 201
    assert_problem(await c.get(f"{scene.versions}/2/quality", headers=auth(scene.token)), 404)
    assert_problem(await c.get(f"{scene.versions}/9/quality", headers=auth(scene.token)), 404)
    assert_problem(
        await c.put(f"{scene.versions}/9/quality", json=REPORT, headers=auth(scene.token)), 404
    )

    # The refused PUT (version 9) is in the log too, as a failure.
    entries = [
        e
        for e in await audit_entries(platform, "datasets.quality_report")
        if e["outcome"] == "success"
    ]
    assert sorted(e["details"]["report_id"] for e in entries) == sorted(
        [first.json()["id"], second.json()["id"]]
    )
    by_job = next(e for e in entries if e["details"]["report_id"] == first.json()["id"])
    assert by_job["details"]["job_id"] == str(job_id)
    assert by_job["details"]["task"] == "check_quality"


@pytest.mark.parametrize(
    ("case", "body", "status"),
    [
        ("no checks", {"passed": True, "score": 1.0}, 422),
        ("no passed", {"score": 1.0, "checks": []}, 422),
        ("passed not a boolean", {"passed": "maybe", "score": 1.0, "checks": []}, 422),
        ("score not a number", {"passed": True, "score": "high", "checks": []}, 422),
        ("checks not objects", {"passed": True, "score": 1.0, "checks": [1, 2]}, 422),
        ("an array", [REPORT], 422),
        ("NaN score", '{"passed": true, "score": NaN, "checks": []}', 422),
        ("not JSON", "passed=true", 422),
        ("too large", {**REPORT, "notes": "x" * (1024 * 1024)}, 413),
    ],
)
async def test_bad_quality_reports_are_refused(
    platform: Platform, case: str, body: Any, status: int
) -> None:
    scene = await make_scene(platform)
    assert (await scene.upload("data.csv", CONTENT)).status_code == 201
    raw = body if isinstance(body, str) else json.dumps(body)
    response = await platform.client.put(
        f"{scene.versions}/1/quality",
        content=raw,
        headers={**auth(scene.token), "Content-Type": "application/json"},
    )
    assert_problem(response, status, case)
    listed = await platform.client.get(
        f"{scene.versions}/1/quality/history", headers=auth(scene.token)
    )
    assert listed.json()["total"] == 0, case


async def test_quality_report_needs_json(platform: Platform) -> None:
    scene = await make_scene(platform)
    assert (await scene.upload("data.csv", CONTENT)).status_code == 201
    response = await platform.client.put(
        f"{scene.versions}/1/quality",
        content=json.dumps(REPORT),
        headers={**auth(scene.token), "Content-Type": "text/plain"},
    )
    assert_problem(response, 415)


async def test_who_may_submit_and_read_quality_reports(platform: Platform) -> None:
    scene = await make_scene(platform)
    assert (await scene.upload("data.csv", CONTENT)).status_code == 201
    quality = f"{scene.versions}/1/quality"
    c = platform.client
    viewer = await member(scene, "viewer")
    editor = await member(scene, "editor")
    outsider = await platform.api.create_user(await platform.api.admin_token(), "data_scientist")

    assert_problem(await c.put(quality, json=REPORT, headers=auth(viewer["token"])), 403)
    assert_problem(await c.get(quality, headers=auth(viewer["token"])), 404)  # none yet
    by_editor = await c.put(quality, json=REPORT, headers=auth(editor["token"]))
    assert by_editor.status_code == 201, by_editor.text
    seen = await c.get(quality, headers=auth(viewer["token"]))
    assert seen.status_code == 200
    assert seen.json()["id"] == by_editor.json()["id"]
    history = await c.get(f"{quality}/history", headers=auth(viewer["token"]))
    assert history.json()["total"] == 1

    # Not a member: the project does not exist for them, whatever they try.
    for response in (
        await c.put(quality, json=REPORT, headers=auth(outsider["token"])),
        await c.get(quality, headers=auth(outsider["token"])),
        await c.get(f"{quality}/history", headers=auth(outsider["token"])),
    ):
        assert_problem(response, 404)
    # A job token of another project cannot reach this one either.
    other = await make_scene(platform, dataset="elsewhere")
    foreign = await job_token(other, uuid.uuid4())
    assert_problem(await c.put(quality, json=REPORT, headers=auth(foreign)), 404)
    assert (await c.get(f"{quality}/history", headers=auth(scene.token))).json()["total"] == 1


# --- external objects ------------------------------------------------------------------------


def _external_bucket(settings: StorageSettings, objects: dict[str, bytes]) -> str:
    """A bucket on the moto server other than the platform's, holding ``objects``."""
    client = s3_client(settings)
    bucket = f"external-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    for key, body in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=body)
    return bucket


@pytest.mark.parametrize("backend", ["s3"])
async def test_presign_an_allowed_external_object(
    start_platform: Any, storage_settings: StorageSettings
) -> None:
    allowed = _external_bucket(storage_settings, {"raw/2026/events.csv": CONTENT})
    refused = _external_bucket(storage_settings, {"raw/secret.csv": SMALLER})
    platform: Platform = await start_platform(
        ingest_allowed_buckets=[allowed], ingest_presign_ttl_seconds=120
    )
    scene = await make_scene(platform)
    presign = f"/api/v1/projects/{scene.project['slug']}/external-objects/presign"
    c = platform.client

    before = datetime.now(UTC)
    response = await c.post(
        presign, json={"uri": f"s3://{allowed}/raw/2026/events.csv"}, headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    link = response.json()
    expires_at = datetime.fromisoformat(link["expires_at"])
    assert before + timedelta(seconds=110) < expires_at < before + timedelta(seconds=130)
    async with httpx.AsyncClient() as outside:  # no platform credentials: the URL is enough
        fetched = await outside.get(link["url"])
    assert fetched.status_code == 200
    assert fetched.content == CONTENT

    # A job's task may ask too.
    token = await job_token(scene, uuid.uuid4())
    by_job = await c.post(
        presign, json={"uri": f"s3://{allowed}/raw/2026/events.csv"}, headers=auth(token)
    )
    assert by_job.status_code == 200, by_job.text

    denied = await c.post(
        presign, json={"uri": f"s3://{refused}/raw/secret.csv"}, headers=auth(scene.token)
    )
    body = assert_problem(denied, 403)
    assert "bucket not allowed for ingest" in body["detail"].lower()
    assert "url" not in body

    entries = await audit_entries(platform, "external_objects.presign")
    outcomes = sorted((e["resource_id"], e["outcome"]) for e in entries)
    assert outcomes == sorted([(allowed, "success"), (allowed, "success"), (refused, "denied")]), (
        outcomes
    )


@pytest.mark.parametrize("backend", ["s3"])
async def test_presign_refusals(start_platform: Any) -> None:
    platform: Platform = await start_platform(ingest_allowed_buckets=["allowed-bucket"])
    scene = await make_scene(platform)
    presign = f"/api/v1/projects/{scene.project['slug']}/external-objects/presign"
    c = platform.client
    malformed = [
        "https://allowed-bucket/key.csv",
        "allowed-bucket/key.csv",
        "s3://allowed-bucket",
        "s3://allowed-bucket/",
        "s3:///key.csv",
        "s3://Allowed_Bucket/key.csv",
        "s3://allowed-bucket/../other/key.csv",
        "s3://allowed-bucket/raw/../../etc/passwd",
        "s3://allowed-bucket/raw/..",
        "s3://allowed-bucket/raw/\x00.csv",
        "s3://allowed-bucket/" + "k" * 1025,
    ]
    for uri in malformed:
        assert_problem(
            await c.post(presign, json={"uri": uri}, headers=auth(scene.token)), 422, uri
        )
    assert_problem(await c.post(presign, json={}, headers=auth(scene.token)), 422)
    assert_problem(
        await c.post(
            presign, json={"uri": "s3://allowed-bucket/k", "x": 1}, headers=auth(scene.token)
        ),
        422,
    )
    # Dots inside a key segment are fine.
    ok = await c.post(
        presign, json={"uri": "s3://allowed-bucket/raw/a..b/v1.2.csv"}, headers=auth(scene.token)
    )
    assert ok.status_code == 200, ok.text

    viewer = await member(scene, "viewer")
    assert_problem(
        await c.post(presign, json={"uri": "s3://allowed-bucket/k"}, headers=auth(viewer["token"])),
        403,
    )
    outsider = await platform.api.create_user(await platform.api.admin_token(), "data_scientist")
    assert_problem(
        await c.post(
            presign, json={"uri": "s3://allowed-bucket/k"}, headers=auth(outsider["token"])
        ),
        404,
    )


async def test_no_bucket_is_allowed_by_default(platform: Platform) -> None:
    assert platform.data.settings.ingest_allowed_buckets == []
    scene = await make_scene(platform)
    response = await platform.client.post(
        f"/api/v1/projects/{scene.project['slug']}/external-objects/presign",
        json={"uri": "s3://any-bucket/data.csv"},
        headers=auth(scene.token),
    )
    assert "bucket not allowed for ingest" in assert_problem(response, 403)["detail"].lower()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('["raw-data", "partner.exports"]', ["raw-data", "partner.exports"]),
        ("raw-data, partner.exports", ["raw-data", "partner.exports"]),
        ("raw-data", ["raw-data"]),
        ("", []),
    ],
)
def test_allowed_buckets_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("ARMILLARY_DATA_INGEST_ALLOWED_BUCKETS", raw)
    monkeypatch.setenv("ARMILLARY_DATA_INGEST_PRESIGN_TTL_SECONDS", "60")
    settings = DataSettings()
    assert settings.ingest_allowed_buckets == expected
    assert settings.ingest_presign_ttl_seconds == 60


# --- the typed client ------------------------------------------------------------------------


async def test_data_client_version_columns(platform: Platform) -> None:
    scene = await make_scene(platform)
    assert (await scene.upload("data.csv", CONTENT)).status_code == 201
    narrow = encode(known_frame().select("id", "category").head(5), "csv")
    assert (await scene.upload("narrow.csv", narrow)).status_code == 201
    other = await make_scene(platform, dataset="elsewhere")
    assert (await other.upload("other.csv", SMALLER)).status_code == 201

    client = DataClient.in_process(create_internal_app(platform.app.state.runtime))
    try:
        slug, project_id = scene.project["slug"], scene.project["id"]
        assert await client.version_columns(scene.token, slug, "measurements", 1) == COLUMNS
        assert await client.version_columns(scene.token, project_id, scene.dataset["id"], 1) == (
            COLUMNS
        )
        narrow_columns = [{"name": "id", "dtype": "Int64"}, {"name": "category", "dtype": "String"}]
        assert (
            await client.version_columns(scene.token, slug, "measurements", "latest")
            == narrow_columns
        )
        assert await client.version_columns(scene.token, slug, "measurements", 3) is None
        assert await client.version_columns(scene.token, slug, "missing", 1) is None
        assert await client.version_columns(scene.token, slug, "missing", "latest") is None
        assert await client.version_columns(scene.token, slug, "../etc", 1) is None

        # Another project's dataset: invisible to this caller, visible to its owner.
        other_slug = other.project["slug"]
        assert await client.version_columns(scene.token, other_slug, "elsewhere", 1) is None
        assert await client.version_columns(scene.token, other_slug, "elsewhere", "latest") is None
        assert await client.version_columns(other.token, other_slug, "elsewhere", 1) == COLUMNS

        # A job token sees its own project only.
        token = await job_token(scene, uuid.uuid4())
        assert await client.version_columns(token, slug, "measurements", "latest") == (
            narrow_columns
        )
        assert await client.version_columns(token, other_slug, "elsewhere", 1) is None

        # A deleted latest version is no longer the latest.
        deleted = await platform.client.delete(f"{scene.versions}/2", headers=auth(scene.token))
        assert deleted.status_code == 204
        assert await client.version_columns(scene.token, slug, "measurements", "latest") == (
            COLUMNS
        )
        assert await client.version_columns(scene.token, slug, "measurements", 2) is None

        with pytest.raises(Unauthorized):
            await client.version_columns("not-a-token", slug, "measurements", 1)
        with pytest.raises(ValueError):
            await client.version_columns(scene.token, slug, "measurements", 0)
    finally:
        await client.aclose()
