"""Keys are built only from ids; anything else is refused by the builders and by every store."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import pytest

from armillary.kit.storage import (
    InvalidObjectKey,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StorageSettings,
    attempt_artifact_key,
    dataset_object_key,
    job_artifact_key,
    model_artifact_key,
    validate_key,
)
from armillary.kit.storage.keys import run_artifact_key, run_artifacts_prefix

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PROJECT = UUID("0b6f9d3e-8f1c-4c55-9d7a-3f2e1a0b9c8d")
OTHER = UUID("5a1e2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b")
SHA = "ab" * 32

EVIL_KEYS = [
    "../etc/passwd",
    "projects/../../etc/passwd",
    "projects/x/../../../etc/passwd",
    "%2e%2e%2fetc%2fpasswd",
    "projects/%2e%2e/%2e%2e/secret",
    "projects/..%2f..%2fsecret",
    "..\\..\\windows\\win.ini",
    "projects\\..\\..\\secret",
    "/etc/passwd",
    "//server/share",
    "C:\\Windows\\system.ini",
    "C:/Windows/system.ini",
    "projects/a\x00b",
    "projects/a\nb",
    "projects/a\rb",
    "projects/\x1b[31m",
    "projects/a\x7f",
    "projects/./x",
    "projects//x",
    "projects/x/",
    "projects/.hidden",
    "projects/\u2024\u2024/x",  # one-dot leaders that render like ".."
    "projects/caf\u00e9",
    "",
    ".",
    "..",
    "a" * 129,
    "/".join(["abc"] * 300),
]


def test_keys_follow_the_design_layout() -> None:
    dataset = UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")
    model = UUID("16fd2706-8baf-433b-82eb-8c7fada847da")
    job = UUID("886313e1-3b8a-5372-9b90-0c9aee199e5d")

    version = UUID("0b5a3c1e-9d2f-4e6a-8b7c-1d2e3f4a5b6c")

    assert dataset_object_key(PROJECT, dataset, version, "parquet") == (
        f"projects/{PROJECT}/datasets/{dataset}/{version}.parquet"
    )
    assert model_artifact_key(PROJECT, model, version, "model.onnx") == (
        f"projects/{PROJECT}/models/{model}/{version}/model.onnx"
    )
    assert job_artifact_key(PROJECT, job, "train", "log-0001-000001.txt") == (
        f"projects/{PROJECT}/jobs/{job}/train/log-0001-000001.txt"
    )
    assert attempt_artifact_key(PROJECT, job, "train", 2, "metrics.json") == (
        f"projects/{PROJECT}/jobs/{job}/train/attempt-2/metrics.json"
    )


@pytest.mark.parametrize(
    ("project_id", "version_id", "ext"),
    [
        (str(PROJECT), OTHER, "parquet"),  # a string that looks like a UUID is still a string
        ("../..", OTHER, "parquet"),
        (PROJECT, str(OTHER), "parquet"),
        (PROJECT, SHA, "parquet"),
        (PROJECT, "../x", "parquet"),
        (PROJECT, OTHER, "exe"),
        (PROJECT, OTHER, "PARQUET"),
        (PROJECT, OTHER, "parquet/../../x"),
        (PROJECT, OTHER, ""),
    ],
)
def test_dataset_key_rejects_bad_components(project_id: Any, version_id: Any, ext: str) -> None:
    with pytest.raises(InvalidObjectKey):
        dataset_object_key(project_id, uuid4(), version_id, ext)


@pytest.mark.parametrize("version", [3, "3", str(OTHER), "../x", None])
def test_model_key_takes_only_the_version_row_id(version: Any) -> None:
    with pytest.raises(InvalidObjectKey):
        model_artifact_key(PROJECT, uuid4(), version, "model.onnx")


@pytest.mark.parametrize("attempt", [0, -1, True, "1", 1.0, 10**10])
def test_attempt_key_rejects_bad_attempts(attempt: Any) -> None:
    with pytest.raises(InvalidObjectKey):
        attempt_artifact_key(PROJECT, uuid4(), "train", attempt, "model.onnx")


@pytest.mark.parametrize(
    "name",
    [
        "..",
        ".",
        "a..b",
        "../model.onnx",
        "..%2fmodel",
        "%2e%2e",
        ".hidden",
        "-flag",
        "a/b",
        "a\\b",
        "..\\x",
        "/abs",
        "",
        "x" * 129,
        "nul\x00",
        "tab\t",
        "sp ace",
        "caf\u00e9",
    ],
)
def test_names_must_match_the_strict_pattern(name: str) -> None:
    with pytest.raises(InvalidObjectKey):
        job_artifact_key(PROJECT, uuid4(), name, "out.parquet")
    with pytest.raises(InvalidObjectKey):
        job_artifact_key(PROJECT, uuid4(), "train", name)
    with pytest.raises(InvalidObjectKey):
        model_artifact_key(PROJECT, uuid4(), OTHER, name)
    with pytest.raises(InvalidObjectKey):
        attempt_artifact_key(PROJECT, uuid4(), "train", 1, name)


def test_longest_allowed_name_is_accepted() -> None:
    name = "a" + "b" * 127
    assert job_artifact_key(PROJECT, OTHER, "t", name).endswith("/" + name)


@pytest.mark.parametrize("key", EVIL_KEYS)
def test_validate_key_rejects_traversal_and_control_characters(key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        validate_key(key)


def _operations(store: ObjectStore, key: str, tmp_path: Path) -> list[Any]:
    source = tmp_path / "source.bin"
    source.write_bytes(b"payload")
    operations: list[Any] = [
        lambda: store.put_bytes(key, b"payload"),
        lambda: store.put_file(key, source),
        lambda: store.open_stream(key),
        lambda: store.get_bytes(key),
        lambda: store.get_to_file(key, tmp_path / "out.bin"),
        lambda: store.head(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.presigned_get_url(key),
    ]
    # As a listing prefix, "" (everything) and a trailing "/" are legitimate.
    if key and not key.endswith("/"):
        operations.append(lambda: store.list_keys(key))
    return operations


@pytest.mark.parametrize("key", EVIL_KEYS)
async def test_every_store_operation_refuses_evil_keys(
    store: ObjectStore, key: str, tmp_path: Path
) -> None:
    for operation in _operations(store, key, tmp_path):
        with pytest.raises(InvalidObjectKey):
            await operation()
    assert await store.list_keys() == []
    assert not (tmp_path / "out.bin").exists()


async def test_refused_keys_write_nothing_outside_the_root(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "objects"
    store = LocalObjectStore(root, StorageSettings(), signing_secret="x" * 32)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    for key in ["../escaped", "../../escaped", "..\\escaped", "%2e%2e%2fescaped", "/tmp/escaped"]:
        with pytest.raises(InvalidObjectKey):
            await store.put_bytes(key, b"x")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before


async def test_local_store_refuses_keys_that_resolve_outside_its_root(
    local_store: LocalObjectStore, tmp_path: Path
) -> None:
    # A symlink planted inside the root passes key validation but points elsewhere.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"do not serve")
    os.symlink(outside, local_store.root / "projects")
    escaping = job_artifact_key(PROJECT, OTHER, "train", "out.bin")
    read_back = "projects/secret.txt"

    with pytest.raises(InvalidObjectKey, match="escapes"):
        await local_store.put_bytes(escaping, b"x")
    with pytest.raises(InvalidObjectKey, match="escapes"):
        await local_store.get_bytes(read_back)
    with pytest.raises(InvalidObjectKey, match="escapes"):
        local_store.path_of(read_back)
    with pytest.raises(InvalidObjectKey, match="escapes"):
        local_store.sign_download(read_back, datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(InvalidObjectKey, match="escapes"):
        await local_store.list_keys("projects")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


async def test_s3_store_writes_exactly_the_validated_key(
    s3_store: S3ObjectStore, s3_settings: StorageSettings, s3_client: S3Client
) -> None:
    key = job_artifact_key(PROJECT, OTHER, "train", "out.bin")
    await s3_store.put_bytes(key, b"x")

    listed = s3_client.list_objects_v2(Bucket=s3_settings.bucket)
    assert [item["Key"] for item in listed.get("Contents", [])] == [key]


def test_run_artifact_keys_stay_under_the_runs_prefix() -> None:
    run = uuid4()
    prefix = f"projects/{PROJECT}/runs/{run}/artifacts"
    assert run_artifacts_prefix(PROJECT, run) == prefix
    assert run_artifact_key(PROJECT, run, "model/MLmodel") == f"{prefix}/model/MLmodel"


@pytest.mark.parametrize("path", [*EVIL_KEYS, "", "a//b", "/abs/x", "a/./b", "a/sp ace"])
def test_run_artifact_paths_refuse_traversal(path: str) -> None:
    with pytest.raises(InvalidObjectKey):
        run_artifact_key(PROJECT, uuid4(), path)
