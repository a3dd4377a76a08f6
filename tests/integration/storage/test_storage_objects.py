"""Object store behaviour, run against the local backend and S3 (moto) alike."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from armillary.kit.storage import (
    ObjectClass,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    StorageSettings,
    class_tags,
    dataset_object_key,
    job_artifact_key,
    project_prefix,
)
from armillary.kit.storage.settings import MIB, S3_MIN_PART_SIZE

# The fixtures configure this part size and multipart threshold.
PART_SIZE = S3_MIN_PART_SIZE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def _dataset_key(data: bytes) -> str:
    return dataset_object_key(uuid4(), uuid4(), uuid4(), "parquet")


async def test_put_file_round_trips_a_multipart_sized_file(
    store: ObjectStore, big_file: Path, tmp_path: Path
) -> None:
    data = big_file.read_bytes()
    key = _dataset_key(data)

    info = await store.put_file(key, big_file, content_type="application/vnd.apache.parquet")

    assert info.key == key
    assert info.size == len(data)
    if isinstance(store, S3ObjectStore):
        # An S3 multipart ETag is "<md5 of part md5s>-<part count>": 2.5 parts -> 3 parts.
        assert info.e_tag is not None
        assert info.e_tag.strip('"').endswith("-3")
        assert info.content_type == "application/vnd.apache.parquet"
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    got = await store.get_to_file(key, downloads / "copy.bin")
    assert got.size == len(data)
    assert (downloads / "copy.bin").read_bytes() == data
    # The temporary file was renamed into place, not left beside it.
    assert [p.name for p in downloads.iterdir()] == ["copy.bin"]


async def test_small_file_is_one_single_part_put(store: ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "small.csv"
    path.write_bytes(b"a,b\n1,2\n")
    key = _dataset_key(path.read_bytes())

    info = await store.put_file(key, path, content_type="text/csv")

    assert info.size == 8
    if isinstance(store, S3ObjectStore):
        assert info.e_tag is not None
        assert "-" not in info.e_tag, "below the threshold the upload must not be multipart"
        assert info.content_type == "text/csv"
    assert await store.get_bytes(key) == b"a,b\n1,2\n"


async def test_open_stream_yields_chunks_in_order(store: ObjectStore, big_file: Path) -> None:
    data = big_file.read_bytes()
    key = _dataset_key(data)
    await store.put_file(key, big_file)

    stream = await store.open_stream(key, chunk_size=1 * MIB)
    chunks = [chunk async for chunk in stream]

    assert len(chunks) > 1, "a streaming get must not hand back the object as one buffer"
    assert all(len(chunk) >= 1 * MIB for chunk in chunks[:-1])
    assert b"".join(chunks) == data


async def test_missing_object_raises_not_found_before_streaming(store: ObjectStore) -> None:
    key = _dataset_key(b"never written")

    with pytest.raises(ObjectNotFound) as caught:
        await store.open_stream(key)
    assert caught.value.status == 404
    assert key not in caught.value.detail
    with pytest.raises(ObjectNotFound):
        await store.head(key)
    with pytest.raises(ObjectNotFound):
        await store.get_to_file(key, Path("/nonexistent-dir/never-created"))
    assert await store.exists(key) is False


async def test_head_reports_size_and_put_bytes_round_trips(store: ObjectStore) -> None:
    payload = b"x" * 12345
    key = job_artifact_key(uuid4(), uuid4(), "train", "metrics.json")

    put = await store.put_bytes(key, payload, content_type="application/json")
    head = await store.head(key)

    assert head.size == put.size == len(payload)
    assert head.key == key
    assert head.last_modified is not None
    assert await store.exists(key) is True
    assert await store.get_bytes(key) == payload


async def test_put_overwrites_atomically(store: ObjectStore) -> None:
    key = job_artifact_key(uuid4(), uuid4(), "train", "model.onnx")
    await store.put_bytes(key, b"first")
    await store.put_bytes(key, b"second version")

    assert await store.get_bytes(key) == b"second version"
    assert (await store.head(key)).size == len(b"second version")


async def test_delete_removes_the_object_and_is_idempotent(store: ObjectStore) -> None:
    key = job_artifact_key(uuid4(), uuid4(), "ingest", "part-0.parquet")
    await store.put_bytes(key, b"data")

    await store.delete(key)

    assert await store.exists(key) is False
    with pytest.raises(ObjectNotFound):
        await store.get_bytes(key)
    await store.delete(key)  # deleting again is not an error


async def test_list_by_prefix_matches_whole_segments(store: ObjectStore) -> None:
    project, other_project, job = uuid4(), uuid4(), uuid4()
    mine = [
        job_artifact_key(project, job, "train", "a.bin"),
        job_artifact_key(project, job, "train", "b.bin"),
        job_artifact_key(project, job, "evaluate", "report.json"),
    ]
    theirs = job_artifact_key(other_project, uuid4(), "train", "a.bin")
    for key in [*mine, theirs]:
        await store.put_bytes(key, key.encode())

    listed = [info async for info in store.list(project_prefix(project))]

    assert sorted(info.key for info in listed) == sorted(mine)
    assert {info.size for info in listed} == {len(key.encode()) for key in mine}
    train_prefix = f"projects/{project}/jobs/{job}/train"
    assert await store.list_keys(train_prefix) == sorted(mine[:2])
    assert await store.list_keys(train_prefix + "/") == sorted(mine[:2])
    # "train" must not match "trai": prefixes are whole segments, never partial names.
    assert await store.list_keys(f"projects/{project}/jobs/{job}/trai") == []
    assert await store.list_keys(project_prefix(uuid4())) == []
    assert sorted(await store.list_keys()) == sorted([*mine, theirs])


async def test_tags_are_rejected_when_invalid(store: ObjectStore) -> None:
    key = job_artifact_key(uuid4(), uuid4(), "train", "x.bin")
    with pytest.raises(ValueError, match="tag"):
        await store.put_bytes(key, b"x", tags={"aws:reserved": "x"})
    with pytest.raises(ValueError, match="tag"):
        await store.put_bytes(key, b"x", tags={"bad&key": "x"})
    with pytest.raises(ValueError, match="tags"):
        await store.put_bytes(key, b"x", tags={f"k{i}": "v" for i in range(11)})
    assert await store.exists(key) is False


@pytest.mark.parametrize("multipart", [False, True], ids=["single", "multipart"])
async def test_s3_object_tags_are_set_at_put_time(
    s3_store: S3ObjectStore,
    s3_settings: StorageSettings,
    s3_client: S3Client,
    tmp_path: Path,
    multipart: bool,
) -> None:
    path = tmp_path / "data.parquet"
    path.write_bytes(b"p" * (PART_SIZE + 1 if multipart else 10))
    key = _dataset_key(path.read_bytes())

    info = await s3_store.put_file(key, path, tags=class_tags(ObjectClass.PROCESSED))

    assert (info.e_tag or "").strip('"').endswith("-2") is multipart
    tagging = s3_client.get_object_tagging(Bucket=s3_settings.bucket, Key=key)
    assert tagging["TagSet"] == [{"Key": "armillary-class", "Value": "processed"}]
