"""``armillary storage init`` and ``describe`` against the moto S3 server; read back with boto3."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

import pytest
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY
from typer.testing import CliRunner

from armillary.cli.main import app
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.admin import (
    RULE_ABORT_MULTIPART,
    RULE_EXPIRE_NONCURRENT,
    RULE_PROCESSED_TO_IA,
    s3_client,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

WIDE = {"COLUMNS": "200"}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def _no_storage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("ARMILLARY_STORAGE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket name, and the S3 settings for it in the environment (as an operator
    would set them); the bucket itself does not exist yet."""
    name = f"armillary-cli-{uuid.uuid4().hex[:16]}"
    for key, value in {
        "BACKEND": "s3",
        "S3_BUCKET": name,
        "S3_ENDPOINT_URL": moto_endpoint,
        "S3_REGION": REGION,
        "S3_ACCESS_KEY_ID": ACCESS_KEY,
        "S3_SECRET_ACCESS_KEY": SECRET_KEY,
        "S3_ALLOW_HTTP": "true",
        "NONCURRENT_EXPIRE_DAYS": "45",
    }.items():
        monkeypatch.setenv(f"ARMILLARY_STORAGE_{key}", value)
    return name


@pytest.fixture
def boto(bucket: str) -> S3Client:
    return s3_client(StorageSettings())


def test_init_creates_and_hardens_the_bucket(
    runner: CliRunner, bucket: str, boto: S3Client
) -> None:
    result = runner.invoke(app, ["storage", "init"], env=WIDE)

    assert result.exit_code == 0, result.output
    assert f"Bucket {bucket}" in result.stdout
    assert "Created now" in result.stdout
    assert "yes" in result.stdout
    assert "blocked (all four flags)" in result.stdout
    for rule in (RULE_PROCESSED_TO_IA, RULE_EXPIRE_NONCURRENT, RULE_ABORT_MULTIPART):
        assert rule in result.stdout

    assert boto.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    encryption = boto.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    default = encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "AES256"
    block = boto.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    rules = {
        rule["ID"]: rule for rule in boto.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    }
    assert set(rules) == {RULE_PROCESSED_TO_IA, RULE_EXPIRE_NONCURRENT, RULE_ABORT_MULTIPART}
    to_ia = rules[RULE_PROCESSED_TO_IA]
    assert to_ia["Filter"]["Tag"] == {"Key": "armillary-class", "Value": "processed"}
    assert to_ia["Transitions"][0]["StorageClass"] == "STANDARD_IA"
    assert rules[RULE_EXPIRE_NONCURRENT]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 45
    assert rules[RULE_ABORT_MULTIPART]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }


def test_init_again_keeps_the_setup_and_describe_reads_it(
    runner: CliRunner, bucket: str, boto: S3Client
) -> None:
    assert runner.invoke(app, ["storage", "init"]).exit_code == 0

    again = runner.invoke(app, ["storage", "init"], env=WIDE)
    assert again.exit_code == 0, again.output
    assert "no (already existed)" in again.stdout
    rules = boto.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert len(rules) == 3

    described = runner.invoke(app, ["storage", "describe"], env=WIDE)
    assert described.exit_code == 0, described.output
    assert "Enabled" in described.stdout
    assert "AES256" in described.stdout
    assert "tag armillary-class=processed" in described.stdout
    assert "expire noncurrent versions after 45 days" in described.stdout
    assert "Created now" not in described.stdout


def test_init_with_a_kms_key(
    runner: CliRunner, bucket: str, boto: S3Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARMILLARY_STORAGE_KMS_KEY_ID", "alias/armillary-test")

    result = runner.invoke(app, ["storage", "init"], env=WIDE)

    assert result.exit_code == 0, result.output
    assert "aws:kms (key alias/armillary-test)" in result.stdout
    rule = boto.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][
        0
    ]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": "alias/armillary-test",
    }


@pytest.mark.parametrize("command", ["init", "describe"])
def test_refuses_the_local_backend(
    runner: CliRunner, command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARMILLARY_STORAGE_BACKEND", "local")

    result = runner.invoke(app, ["storage", command], env=WIDE)

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    message = result.stderr.strip()
    assert message.startswith("Error: The storage backend is 'local'")
    assert "ARMILLARY_STORAGE_BACKEND=s3" in message
    assert len(message.splitlines()) == 1


def test_invalid_settings_and_unreachable_s3_are_clear_errors(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARMILLARY_STORAGE_BACKEND", "s3")
    no_bucket = runner.invoke(app, ["storage", "init"], env=WIDE)
    assert no_bucket.exit_code == 1
    assert "ARMILLARY_STORAGE_S3_BUCKET is required" in no_bucket.stderr
    assert "Traceback" not in no_bucket.output

    monkeypatch.setenv("ARMILLARY_STORAGE_S3_BUCKET", "armillary-nowhere")
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_ALLOW_HTTP", "true")
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
    unreachable = runner.invoke(app, ["storage", "describe"], env=WIDE)
    assert unreachable.exit_code == 1
    assert unreachable.stderr.startswith("Error: S3 request failed")
    assert "Traceback" not in unreachable.output
