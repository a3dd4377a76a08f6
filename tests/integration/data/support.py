"""Helpers for the data service tests: the platform on one storage backend, seen from outside.

Checks of what is stored go around the code under test: the local root is walked on disk, the
bucket listed with boto3, the version table counted with SQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import polars as pl
from fastapi import FastAPI
from sqlalchemy import text
from tests.conftest import Api, auth

from armillary.data.components import Data, data_of
from armillary.kit.storage import LocalObjectStore, ObjectStore, StorageSettings

PROBLEM = "application/problem+json"


@dataclass
class Platform:
    """One started app with its client, data component and spool directory."""

    app: FastAPI
    client: httpx.AsyncClient
    storage_settings: StorageSettings
    spool_dir: Path
    stack: contextlib.AsyncExitStack
    api: Api = field(init=False)

    def __post_init__(self) -> None:
        self.api = Api(self.client)

    async def stop(self) -> None:
        """Close the client and run the app's shutdown (idempotent)."""
        await self.stack.aclose()

    @property
    def data(self) -> Data:
        return data_of(self.app.state.runtime)

    @property
    def store(self) -> ObjectStore:
        return self.data.store

    @property
    def backend(self) -> str:
        return self.storage_settings.backend

    async def version_rows(self) -> int:
        async with self.app.state.runtime.db.sessionmaker() as session:
            count = await session.scalar(text("SELECT count(*) FROM data_dataset_versions"))
        return int(count or 0)

    def all_keys(self) -> list[str]:
        """Every object in the whole store (local root or bucket), bypassing the store code."""
        if isinstance(self.store, LocalObjectStore):
            root = self.store.root
            keys = []
            for directory, _dirs, files in os.walk(root):
                for name in files:
                    keys.append(str((Path(directory) / name).relative_to(root)))
            return sorted(keys)
        from armillary.kit.storage.admin import s3_client

        client = s3_client(self.storage_settings)
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.storage_settings.bucket
        ):
            keys += [item["Key"] for item in page.get("Contents", [])]
        return sorted(keys)

    def spool_files(self) -> list[str]:
        return sorted(p.name for p in self.spool_dir.glob("armillary-upload-*"))

    async def snapshot(self) -> tuple[int, list[str], list[str]]:
        """(version rows, stored keys, spool files): compare before and after a failure."""
        return await self.version_rows(), self.all_keys(), self.spool_files()


@dataclass
class Scene:
    """A data scientist's project with one dataset, ready for uploads."""

    platform: Platform
    token: str
    user: dict[str, Any]
    project: dict[str, Any]
    dataset: dict[str, Any]

    @property
    def base(self) -> str:
        return f"/api/v1/projects/{self.project['slug']}/datasets"

    @property
    def versions(self) -> str:
        return f"{self.base}/{self.dataset['name']}/versions"

    async def key_for(self, sha256: str, ext: str, number: int | None = None) -> str:
        """The key the version with these bytes (and ``number``) recorded: under the dataset,
        named by the version's own id (never shared with another upload)."""
        query = (
            "SELECT id, object_key FROM data_dataset_versions WHERE dataset_id = :d AND sha256 = :s"
        )
        if number is not None:
            query += f" AND number = {int(number)}"
        async with self.platform.app.state.runtime.db.sessionmaker() as session:
            row = (await session.execute(text(query), {"d": self.dataset["id"], "s": sha256})).one()
        version_id = uuid.UUID(str(row.id))
        expected = f"projects/{self.project['id']}/datasets/{self.dataset['id']}/{version_id}.{ext}"
        assert row.object_key == expected
        return str(row.object_key)

    async def upload(
        self,
        filename: str,
        content: bytes,
        *,
        token: str | None = None,
        data: dict[str, str] | None = None,
        content_type: str = "application/octet-stream",
    ) -> httpx.Response:
        return await self.platform.client.post(
            self.versions,
            files={"file": (filename, content, content_type)},
            data=data,
            headers=auth(token or self.token),
        )


async def make_scene(platform: Platform, dataset: str = "measurements") -> Scene:
    api = platform.api
    admin = await api.admin_token()
    user = await api.create_user(admin, "data_scientist")
    project = await api.create_project(user["token"])
    created = await platform.client.post(
        f"/api/v1/projects/{project['slug']}/datasets",
        json={"name": dataset, "description": "test data", "tags": ["b", "a"]},
        headers=auth(user["token"]),
    )
    assert created.status_code == 201, created.text
    return Scene(platform, user["token"], user, project, created.json())


def assert_problem(response: httpx.Response, status: int, case: str = "") -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` and a title and detail."""
    assert response.status_code == status, (case, response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), (case, response.headers)
    body = dict(response.json())
    assert body["status"] == status, case
    assert body["title"], (case, body)
    assert body["detail"], (case, body)
    return body


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Known data: the statistics below follow from how the frame is built, not from the profiler.
ROWS = 1000


def known_frame() -> pl.DataFrame:
    """``id`` 1..1000; ``score`` = id/2 except every 10th row null; ``category`` a/b/c in
    500/300/200 rows."""
    ids = list(range(1, ROWS + 1))
    scores = [None if i % 10 == 0 else i / 2 for i in ids]
    categories = ["a" if i <= 500 else "b" if i <= 800 else "c" for i in ids]
    return pl.DataFrame(
        {"id": ids, "score": scores, "category": categories},
        schema={"id": pl.Int64, "score": pl.Float64, "category": pl.String},
    )


def encode(frame: pl.DataFrame, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "csv":
        frame.write_csv(buffer)
    elif fmt == "parquet":
        frame.write_parquet(buffer)
    elif fmt == "jsonl":
        frame.write_ndjson(buffer)
    else:
        raise ValueError(fmt)
    return buffer.getvalue()
