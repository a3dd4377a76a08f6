"""Bucket administration against the moto server, read back through plain boto3."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from armillary.kit.storage import S3ObjectStore, StorageSettings, job_artifact_key
from armillary.kit.storage.admin import (
    RULE_ABORT_MULTIPART,
    RULE_EXPIRE_NONCURRENT,
    RULE_PROCESSED_TO_IA,
    describe_bucket,
    init_bucket,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

ALL_BLOCKED = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _rules_by_id(client: S3Client, bucket: str) -> dict[str, Any]:
    rules = client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    return {rule.get("ID", ""): rule for rule in rules}


def _bucket_exists(client: S3Client, bucket: str) -> bool:
    names = [b.get("Name") for b in client.list_buckets().get("Buckets", [])]
    return bucket in names


def test_init_bucket_creates_and_hardens_the_bucket(
    s3_settings: StorageSettings, s3_client: S3Client
) -> None:
    bucket = s3_settings.bucket
    assert not _bucket_exists(s3_client, bucket)

    summary = init_bucket(s3_settings)

    assert summary["created"] is True
    assert _bucket_exists(s3_client, bucket)
    assert s3_client.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    encryption = s3_client.get_bucket_encryption(Bucket=bucket)
    rule = encryption["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3_client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert dict(block) == ALL_BLOCKED

    rules = _rules_by_id(s3_client, bucket)
    assert set(rules) == {RULE_PROCESSED_TO_IA, RULE_EXPIRE_NONCURRENT, RULE_ABORT_MULTIPART}
    assert all(r["Status"] == "Enabled" for r in rules.values())

    to_ia = rules[RULE_PROCESSED_TO_IA]
    # Selected by tag, not by a key prefix.
    assert to_ia["Filter"] == {"Tag": {"Key": "armillary-class", "Value": "processed"}}
    assert "Prefix" not in to_ia
    assert to_ia["Transitions"] == [{"Days": 30, "StorageClass": "STANDARD_IA"}]

    noncurrent = rules[RULE_EXPIRE_NONCURRENT]
    assert noncurrent["NoncurrentVersionExpiration"]["NoncurrentDays"] == 90
    assert noncurrent["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert noncurrent["Filter"].get("Prefix", "") == ""
    assert "Tag" not in noncurrent["Filter"]

    abort = rules[RULE_ABORT_MULTIPART]
    # S3 refuses tag filters on this action: the rule must cover the whole bucket.
    assert abort["Filter"] == {"Prefix": ""}
    assert abort["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}

    assert summary["versioning"] == "Enabled"
    assert summary["encryption"] == {
        "algorithm": "AES256",
        "kms_key_id": None,
        "bucket_key_enabled": False,
    }
    assert summary["public_access_block"] == ALL_BLOCKED
    assert {r.get("ID") for r in summary["lifecycle_rules"]} == set(rules)


def test_lifecycle_days_come_from_settings(s3_settings_factory: Any) -> None:
    settings = s3_settings_factory(
        processed_to_ia_days=45,
        noncurrent_expire_days=120,
        abort_multipart_days=3,
    )
    init_bucket(settings)

    rules = {r.get("ID"): r for r in describe_bucket(settings)["lifecycle_rules"]}
    assert rules[RULE_PROCESSED_TO_IA]["Transitions"][0]["Days"] == 45
    assert rules[RULE_EXPIRE_NONCURRENT]["NoncurrentVersionExpiration"]["NoncurrentDays"] == 120
    assert rules[RULE_ABORT_MULTIPART]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 3
    }


def test_init_bucket_is_idempotent_and_keeps_operator_rules(
    s3_settings: StorageSettings, s3_client: S3Client
) -> None:
    bucket = s3_settings.bucket
    s3_client.create_bucket(Bucket=bucket)
    s3_client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "ops-expire-scratch",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "scratch/"},
                    "Expiration": {"Days": 1},
                }
            ]
        },
    )

    first = init_bucket(s3_settings)
    second = init_bucket(s3_settings)

    assert first["created"] is False
    assert second["created"] is False
    ids = [
        r.get("ID", "")
        for r in s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    ]
    assert sorted(ids) == sorted(
        ["ops-expire-scratch", RULE_PROCESSED_TO_IA, RULE_EXPIRE_NONCURRENT, RULE_ABORT_MULTIPART]
    )
    assert second["versioning"] == "Enabled"
    assert second["public_access_block"] == ALL_BLOCKED


def test_init_bucket_uses_kms_when_a_key_is_configured(
    s3_settings_factory: Any, s3_client: S3Client
) -> None:
    key_arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    settings = s3_settings_factory(kms_key_id=key_arn)

    summary = init_bucket(settings)

    rule = s3_client.get_bucket_encryption(Bucket=settings.bucket)[
        "ServerSideEncryptionConfiguration"
    ]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": key_arn,
    }
    assert rule.get("BucketKeyEnabled") is True
    assert summary["encryption"] == {
        "algorithm": "aws:kms",
        "kms_key_id": key_arn,
        "bucket_key_enabled": True,
    }


def test_init_bucket_outside_us_east_1(s3_settings_factory: Any) -> None:
    settings = s3_settings_factory(s3_region="eu-west-1")

    summary = init_bucket(settings)

    assert summary["created"] is True
    from armillary.kit.storage.admin import s3_client as make_client

    location = make_client(settings).get_bucket_location(Bucket=settings.bucket)
    assert location.get("LocationConstraint") == "eu-west-1"


def test_describe_bucket_reads_an_unconfigured_bucket(
    s3_settings: StorageSettings, s3_client: S3Client
) -> None:
    s3_client.create_bucket(Bucket=s3_settings.bucket)

    description = describe_bucket(s3_settings)

    assert description["bucket"] == s3_settings.bucket
    assert description["versioning"] == "Disabled"
    assert description["lifecycle_rules"] == []


def test_describe_bucket_fails_for_a_missing_bucket(s3_settings: StorageSettings) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        describe_bucket(s3_settings)


async def test_versioned_bucket_keeps_old_versions_for_the_lifecycle(
    s3_settings: StorageSettings, s3_client: S3Client
) -> None:
    init_bucket(s3_settings)
    store = S3ObjectStore(s3_settings)
    key = job_artifact_key(uuid4(), uuid4(), "train", "model.onnx")

    first = await store.put_bytes(key, b"v1")
    second = await store.put_bytes(key, b"v2")
    await store.delete(key)

    assert first.version is not None
    assert second.version is not None
    assert first.version != second.version
    assert await store.exists(key) is False
    versions = s3_client.list_object_versions(Bucket=s3_settings.bucket, Prefix=key)
    kept = {v.get("VersionId") for v in versions.get("Versions", [])}
    assert kept == {first.version, second.version}
    assert len(versions.get("DeleteMarkers", [])) == 1
