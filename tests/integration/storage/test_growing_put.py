"""A put that follows a file while it grows: parts go out before the file is complete, the
object appears only on ``finish``, and ``abort`` leaves neither an object nor an open
multipart upload (S3 on the moto server)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from armillary.kit.storage import ObjectNotFound, S3ObjectStore, StorageSettings
from armillary.kit.storage.growing_put import GrowingFilePut
from armillary.kit.storage.settings import S3_MIN_PART_SIZE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KEY = "projects/00000000-0000-0000-0000-000000000001/datasets/growing.csv"


def _open_uploads(s3_client: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


async def _parts_sent(s3_client: S3Client, bucket: str) -> int:
    """Parts of the (one) open multipart upload that the store has received so far."""
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    if not uploads:
        return 0
    parts = s3_client.list_parts(
        Bucket=bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"]
    )
    return len(parts.get("Parts", []))


async def _wait_for_parts(s3_client: S3Client, bucket: str, count: int) -> None:
    for _ in range(300):
        if await _parts_sent(s3_client, bucket) >= count:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"fewer than {count} parts reached the store")


async def _grow(path: Path, put: GrowingFilePut, data: bytes, upto: int) -> None:
    """Append ``data[current size:upto]`` to the file and tell the put."""
    with path.open("ab") as handle:
        handle.write(data[handle.tell() : upto])
    put.grew(upto)


async def test_parts_go_out_while_the_file_grows_and_finish_stores_the_bytes(
    s3_store: S3ObjectStore, s3_client: S3Client, s3_settings: StorageSettings, tmp_path: Path
) -> None:
    bucket = s3_settings.bucket
    data = os.urandom(3 * S3_MIN_PART_SIZE + 12345)
    path = tmp_path / "spool.part"
    path.touch()
    put = GrowingFilePut(s3_store, KEY, path, content_type="text/csv")
    await _grow(path, put, data, 2 * S3_MIN_PART_SIZE + 1)
    # Two full parts are out while most of the file has not been written yet.
    await _wait_for_parts(s3_client, bucket, 2)
    with pytest.raises(ObjectNotFound):
        await s3_store.head(KEY)
    await _grow(path, put, data, len(data))
    info = await put.finish(len(data))
    assert info.size == len(data)
    assert info.content_type == "text/csv"
    stored = await s3_store.get_bytes(KEY)
    assert hashlib.sha256(stored).hexdigest() == hashlib.sha256(data).hexdigest()
    assert _open_uploads(s3_client, bucket) == []
    await put.abort()  # after finish: nothing to abort, the object stays
    assert await s3_store.exists(KEY)


async def test_abort_midway_aborts_the_multipart_upload(
    s3_store: S3ObjectStore, s3_client: S3Client, s3_settings: StorageSettings, tmp_path: Path
) -> None:
    bucket = s3_settings.bucket
    data = os.urandom(3 * S3_MIN_PART_SIZE)
    path = tmp_path / "spool.part"
    path.touch()
    put = GrowingFilePut(s3_store, KEY, path)
    await _grow(path, put, data, 2 * S3_MIN_PART_SIZE + 1)
    await _wait_for_parts(s3_client, bucket, 1)
    assert _open_uploads(s3_client, bucket) == [KEY]
    await put.abort()
    assert _open_uploads(s3_client, bucket) == []
    assert not await s3_store.exists(KEY)
    with pytest.raises(RuntimeError):
        await put.finish(len(data))


async def test_abort_before_any_byte_and_a_cancelled_caller_still_abort(
    s3_store: S3ObjectStore, s3_client: S3Client, s3_settings: StorageSettings, tmp_path: Path
) -> None:
    bucket = s3_settings.bucket
    path = tmp_path / "spool.part"
    path.touch()
    put = GrowingFilePut(s3_store, KEY, path)
    await put.abort()
    assert _open_uploads(s3_client, bucket) == []

    data = os.urandom(2 * S3_MIN_PART_SIZE)
    second = GrowingFilePut(s3_store, KEY, path)
    await _grow(path, second, data, len(data))
    await _wait_for_parts(s3_client, bucket, 1)
    # The caller is cancelled while it waits for the abort: the abort still completes.
    waiter = asyncio.ensure_future(second.abort())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for _ in range(200):
        if not _open_uploads(s3_client, bucket):
            break
        await asyncio.sleep(0.05)
    assert _open_uploads(s3_client, bucket) == []
    assert not await s3_store.exists(KEY)
