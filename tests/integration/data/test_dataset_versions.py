"""Dataset versions through the HTTP API, on the local backend and on S3 (moto server):
formats, numbering and deduplication, content-addressed keys, profiles, downloads, links and
soft deletes."""

from __future__ import annotations

import asyncio
import math
import statistics
from datetime import timedelta
from typing import Any

import httpx
import polars as pl
import pytest
from tests.conftest import auth
from tests.integration.data.support import (
    ROWS,
    Platform,
    assert_problem,
    encode,
    known_frame,
    make_scene,
    sha256,
)

from armillary.kit.db import utcnow
from armillary.kit.storage import LocalObjectStore

FORMATS = [("csv", "data.csv"), ("parquet", "data.parquet"), ("jsonl", "data.jsonl")]


async def test_formats_numbering_dedup_and_content_addressed_keys(platform: Platform) -> None:
    scene = await make_scene(platform)
    frame = known_frame()
    uploaded: dict[str, dict[str, Any]] = {}
    for number, (fmt, filename) in enumerate(FORMATS, start=1):
        content = encode(frame, fmt)
        response = await scene.upload(filename, content)
        assert response.status_code == 201, response.text
        version = response.json()
        assert version["number"] == number
        assert version["format"] == fmt
        assert version["size_bytes"] == len(content)
        assert version["sha256"] == sha256(content)
        assert version["original_filename"] == filename
        assert version["row_count"] == ROWS
        assert version["profile_status"] == "ready"
        assert version["parent_version"] is None
        assert version["created_by"] == scene.user["id"]
        assert response.headers["location"].endswith(f"/versions/{number}")
        key = await scene.key_for(sha256(content), fmt)
        assert await platform.store.exists(key)
        assert await platform.store.get_bytes(key) == content
        uploaded[fmt] = version

    # The same bytes again (under another name): the existing version, nothing new stored.
    csv = encode(frame, "csv")
    keys_before = platform.all_keys()
    again = await scene.upload("renamed.csv", csv)
    assert again.status_code == 200, again.text
    assert again.json()["number"] == 1
    assert again.json()["id"] == uploaded["csv"]["id"]
    assert platform.all_keys() == keys_before
    assert await platform.version_rows() == 3

    # Changed bytes: version n+1, with a parent given by number.
    changed = csv + b"1001,500.5,c\n"
    response = await scene.upload("data.csv", changed, data={"parent": "1"})
    assert response.status_code == 201, response.text
    assert response.json()["number"] == 4
    assert response.json()["parent_version"] == 1
    assert response.json()["row_count"] == ROWS + 1

    # Every object sits at its content-addressed key under the project, and nowhere else.
    expected = sorted(
        [await scene.key_for(sha256(encode(frame, fmt)), fmt) for fmt, _ in FORMATS]
        + [await scene.key_for(sha256(changed), "csv")]
    )
    assert platform.all_keys() == expected
    assert await platform.store.list_keys(f"projects/{scene.project['id']}") == expected

    listed = await platform.client.get(scene.versions, headers=auth(scene.token))
    assert listed.status_code == 200
    assert listed.json()["total"] == 4
    assert [v["number"] for v in listed.json()["items"]] == [4, 3, 2, 1]
    dataset = await platform.client.get(f"{scene.base}/measurements", headers=auth(scene.token))
    assert dataset.json()["latest_version"] == 4
    assert dataset.json()["tags"] == ["a", "b"]
    datasets = await platform.client.get(scene.base, headers=auth(scene.token))
    assert [(d["name"], d["latest_version"]) for d in datasets.json()["items"]] == [
        ("measurements", 4)
    ]


async def test_a_file_above_the_multipart_threshold_round_trips(platform: Platform) -> None:
    scene = await make_scene(platform)
    # ~7 MiB: more than one 5 MiB part on S3.
    frame = pl.DataFrame({"i": range(700_000), "j": [k % 97 for k in range(700_000)]})
    content = encode(frame, "csv")
    assert len(content) > platform.storage_settings.multipart_threshold_bytes
    response = await scene.upload("big.csv", content)
    assert response.status_code == 201, response.text
    assert response.json()["row_count"] == 700_000
    key = await scene.key_for(sha256(content), "csv")
    assert await platform.store.get_bytes(key) == content
    assert platform.spool_files() == []


def _column(profile: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [column] = [c for c in profile if c["name"] == name]
    return column


# Profiling reads the spooled file, not the store: one backend is enough.
@pytest.mark.parametrize("backend", ["local"], indirect=True)
@pytest.mark.parametrize(("fmt", "filename"), FORMATS)
async def test_profile_of_known_data(platform: Platform, fmt: str, filename: str) -> None:
    scene = await make_scene(platform)
    response = await scene.upload(filename, encode(known_frame(), fmt))
    assert response.status_code == 201, response.text
    detail = await platform.client.get(f"{scene.versions}/1", headers=auth(scene.token))
    assert detail.status_code == 200
    body = detail.json()
    assert body["row_count"] == ROWS
    assert body["columns"] == [
        {"name": "id", "dtype": "Int64"},
        {"name": "score", "dtype": "Float64"},
        {"name": "category", "dtype": "String"},
    ]
    profile = body["profile"]
    assert [c["name"] for c in profile] == ["id", "score", "category"]

    ids = list(range(1, ROWS + 1))
    column = _column(profile, "id")
    assert column["null_count"] == 0
    assert abs(column["distinct_estimate"] - ROWS) <= ROWS * 0.05
    assert (column["min"], column["max"]) == (1, ROWS)
    assert column["mean"] == pytest.approx(statistics.fmean(ids))
    assert column["std"] == pytest.approx(statistics.stdev(ids))
    histogram = column["histogram"]
    assert histogram["edges"][0] == 1
    assert histogram["edges"][-1] == pytest.approx(ROWS)
    assert len(histogram["edges"]) == len(histogram["counts"]) + 1
    # Ten equal-width bins over 1..1000 hold 100 ids each.
    assert histogram["counts"] == [100] * 10
    # Every id occurs once: the top values are the five smallest, once each.
    assert column["top_values"] == [{"value": i, "count": 1} for i in range(1, 6)]

    scores = [i / 2 for i in ids if i % 10 != 0]
    column = _column(profile, "score")
    assert column["null_count"] == ROWS // 10
    assert abs(column["distinct_estimate"] - len(scores)) <= len(scores) * 0.05 + 1
    assert (column["min"], column["max"]) == (0.5, 499.5)
    assert column["mean"] == pytest.approx(statistics.fmean(scores))
    assert column["std"] == pytest.approx(statistics.stdev(scores))
    assert sum(column["histogram"]["counts"]) == len(scores)

    column = _column(profile, "category")
    assert column["null_count"] == 0
    assert column["distinct_estimate"] == 3
    assert (column["min"], column["max"]) == ("a", "c")
    assert column["top_values"] == [
        {"value": "a", "count": 500},
        {"value": "b", "count": 300},
        {"value": "c", "count": 200},
    ]
    assert "mean" not in column
    assert "histogram" not in column
    assert not any(isinstance(v, float) and math.isnan(v) for c in profile for v in c.values())


async def _fetch(url: str) -> httpx.Response:
    # A plain client: no token, no app transport.
    async with httpx.AsyncClient() as client:
        return await client.get(url)


async def test_download_streams_or_redirects_to_a_presigned_url(platform: Platform) -> None:
    scene = await make_scene(platform)
    content = encode(known_frame(), "csv")
    assert (await scene.upload("data.csv", content)).status_code == 201
    response = await platform.client.get(f"{scene.versions}/1/content", headers=auth(scene.token))
    if platform.backend == "local":
        assert response.status_code == 200, response.text
        assert response.content == content
        assert response.headers["x-content-sha256"] == sha256(content)
        assert response.headers["content-length"] == str(len(content))
        assert "measurements-v1.csv" in response.headers["content-disposition"]
    else:
        assert response.status_code == 307, response.text
        url = response.headers["location"]
        assert url.startswith(platform.storage_settings.s3_endpoint_url or "")
        assert "X-Amz-Signature=" in url
        fetched = await _fetch(url)
        assert fetched.status_code == 200
        assert fetched.content == content
    # Without the redirect, every backend streams through the API.
    streamed = await platform.client.get(
        f"{scene.versions}/1/content", params={"redirect": "false"}, headers=auth(scene.token)
    )
    assert streamed.status_code == 200
    assert streamed.content == content
    # No token, no bytes.
    assert_problem(await platform.client.get(f"{scene.versions}/1/content"), 401)


async def test_download_link_fetches_without_a_token(platform: Platform) -> None:
    scene = await make_scene(platform)
    content = encode(known_frame(), "jsonl")
    assert (await scene.upload("data.jsonl", content)).status_code == 201
    response = await platform.client.post(
        f"{scene.versions}/1/content/link", headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    link = response.json()
    assert link["expires_in"] == platform.data.settings.download_link_ttl_seconds
    url = link["url"]
    if platform.backend == "s3":
        assert "X-Amz-Signature=" in url
        fetched = await _fetch(url)
        assert fetched.status_code == 200
        assert fetched.content == content
        return
    prefix = "http://testserver/api/v1/downloads/"
    assert url.startswith(prefix)
    token = url.removeprefix(prefix)
    path = f"/api/v1/downloads/{token}"
    fetched = await platform.client.get(path)
    assert fetched.status_code == 200
    assert fetched.content == content

    # Tampered: another expiry, or another MAC, or another key.
    encoded_key, expires, mac = token.split(".")
    store = platform.store
    assert isinstance(store, LocalObjectStore)
    tampered = [
        f"{encoded_key}.{int(expires) + 3600}.{mac}",
        f"{encoded_key}.{expires}.{('A' if mac[0] != 'A' else 'B') + mac[1:]}",
        f"{encoded_key[:-2]}xx.{expires}.{mac}",
        "not-a-token",
    ]
    for bad in tampered:
        assert_problem(await platform.client.get(f"/api/v1/downloads/{bad}"), 403)
    key = await scene.key_for(sha256(content), "jsonl")
    expired = store.sign_download(key, utcnow() - timedelta(seconds=1))
    body = assert_problem(await platform.client.get(f"/api/v1/downloads/{expired}"), 403)
    assert "expired" in body["title"].lower()

    # Each refusal is audited, and the log never holds the token (a credential).
    admin = await platform.api.admin_token()
    log = await platform.client.get(
        "/api/v1/audit", params={"action": "downloads.get", "limit": 50}, headers=auth(admin)
    )
    assert log.status_code == 200, log.text
    records = log.json()["items"]
    assert [r["outcome"] for r in records] == ["denied"] * (len(tampered) + 1)
    assert [r["details"]["reason"] for r in records] == ["expired"] + ["invalid"] * len(tampered)
    assert token not in log.text
    assert expired not in log.text


async def test_soft_delete_hides_a_version(platform: Platform) -> None:
    scene = await make_scene(platform)
    first = encode(known_frame(), "csv")
    second = encode(known_frame().head(10), "csv")
    assert (await scene.upload("a.csv", first)).status_code == 201
    assert (await scene.upload("b.csv", second)).status_code == 201

    deleted = await platform.client.delete(f"{scene.versions}/2", headers=auth(scene.token))
    assert deleted.status_code == 204, deleted.text
    h = auth(scene.token)
    listed = (await platform.client.get(scene.versions, headers=h)).json()
    assert [v["number"] for v in listed["items"]] == [1]
    assert listed["total"] == 1
    assert_problem(await platform.client.get(f"{scene.versions}/2", headers=h), 404)
    assert_problem(await platform.client.get(f"{scene.versions}/2/content", headers=h), 404)
    assert_problem(await platform.client.post(f"{scene.versions}/2/content/link", headers=h), 404)
    assert_problem(await platform.client.delete(f"{scene.versions}/2", headers=h), 404)
    everything = await platform.client.get(
        scene.versions, params={"include_deleted": "true"}, headers=h
    )
    assert [(v["number"], v["deleted"]) for v in everything.json()["items"]] == [
        (2, True),
        (1, False),
    ]
    dataset = await platform.client.get(f"{scene.base}/measurements", headers=h)
    assert dataset.json()["latest_version"] == 1
    # Soft: the bytes stay for lineage.
    deleted_key = await scene.key_for(sha256(second), "csv")
    assert await platform.store.exists(deleted_key)
    # Version 1 is untouched.
    assert (await platform.client.get(f"{scene.versions}/1", headers=h)).status_code == 200
    # The same bytes as the deleted version make a new version with an object of its own.
    again = await scene.upload("b.csv", second)
    assert again.status_code == 201, again.text
    assert again.json()["number"] == 3
    new_key = await scene.key_for(sha256(second), "csv", number=3)
    assert new_key != deleted_key
    assert await platform.store.get_bytes(new_key) == second
    assert await platform.store.get_bytes(deleted_key) == second


async def test_concurrent_uploads_get_distinct_numbers_and_dedupe(platform: Platform) -> None:
    scene = await make_scene(platform)
    frame = known_frame()
    contents = [encode(frame.head(n), "csv") for n in (10, 20, 30)]
    responses = await asyncio.gather(*(scene.upload(f"{i}.csv", c) for i, c in enumerate(contents)))
    assert [r.status_code for r in responses] == [201, 201, 201]
    assert sorted(r.json()["number"] for r in responses) == [1, 2, 3]
    # The same new bytes twice at once: one version, answered 201 once and 200 once.
    same = encode(frame, "csv")
    twins = await asyncio.gather(scene.upload("a.csv", same), scene.upload("b.csv", same))
    assert sorted(r.status_code for r in twins) == [200, 201]
    assert {r.json()["number"] for r in twins} == {4}
    assert await platform.version_rows() == 4
    assert platform.spool_files() == []
    # The twin that lost kept no object of its own: one object per version.
    assert len(platform.all_keys()) == 4
