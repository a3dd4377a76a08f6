"""S3 bucket administration with boto3: create and harden the bucket, and read its setup back.

obstore covers the data path only; versioning, encryption, public access and lifecycle are
bucket-level APIs that need an S3 management client. These calls are synchronous: they run
from the CLI or at deploy time, not on a request path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, TypedDict, cast

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from armillary.kit.storage.base import CLASS_TAG, ObjectClass
from armillary.kit.storage.settings import StorageSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType
    from mypy_boto3_s3.type_defs import (
        LifecycleRuleOutputTypeDef,
        LifecycleRuleTypeDef,
        ServerSideEncryptionByDefaultTypeDef,
        ServerSideEncryptionRuleTypeDef,
    )

RULE_PROCESSED_TO_IA: Final = "armillary-processed-to-standard-ia"
RULE_EXPIRE_NONCURRENT: Final = "armillary-expire-noncurrent-versions"
RULE_ABORT_MULTIPART: Final = "armillary-abort-incomplete-multipart"
_OWN_RULES: Final = frozenset({RULE_PROCESSED_TO_IA, RULE_EXPIRE_NONCURRENT, RULE_ABORT_MULTIPART})
_PUBLIC_ACCESS_FLAGS: Final = (
    "BlockPublicAcls",
    "IgnorePublicAcls",
    "BlockPublicPolicy",
    "RestrictPublicBuckets",
)
_MISSING_BUCKET: Final = frozenset({"404", "NoSuchBucket", "NotFound"})


class EncryptionDescription(TypedDict):
    """The bucket's default encryption."""

    algorithm: str | None
    kms_key_id: str | None
    bucket_key_enabled: bool


class BucketDescription(TypedDict):
    """How a bucket is configured, as read back from S3."""

    bucket: str
    versioning: str
    encryption: EncryptionDescription | None
    public_access_block: dict[str, bool]
    lifecycle_rules: list[LifecycleRuleOutputTypeDef]


class BucketInitSummary(BucketDescription):
    """What :func:`init_bucket` did, and the configuration it left in place."""

    created: bool


def s3_client(settings: StorageSettings) -> S3Client:
    """A boto3 S3 client for the configured endpoint, region and credentials."""
    secret = settings.s3_secret_access_key
    return boto3.client(
        "s3",
        region_name=settings.s3_region,
        endpoint_url=settings.s3_endpoint_url,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        verify=str(settings.s3_ca_file) if settings.s3_ca_file else None,
        config=Config(
            signature_version="s3v4",
            # S3-compatible servers behind a custom endpoint rarely support virtual hosts.
            s3={"addressing_style": "path" if settings.s3_endpoint_url else "auto"},
            retries={"mode": "standard", "max_attempts": 5},
        ),
    )


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _ensure_bucket(client: S3Client, bucket: str, region: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as error:
        if _error_code(error) not in _MISSING_BUCKET:
            raise
    try:
        # us-east-1 is the one region that rejects an explicit LocationConstraint.
        if region == "us-east-1":
            client.create_bucket(Bucket=bucket)
        else:
            client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={
                    "LocationConstraint": cast("BucketLocationConstraintType", region)
                },
            )
    except ClientError as error:
        # Another init won the race; the bucket is ours either way.
        if _error_code(error) != "BucketAlreadyOwnedByYou":
            raise
        return False
    return True


def _encryption_rule(settings: StorageSettings) -> ServerSideEncryptionRuleTypeDef:
    if settings.kms_key_id:
        by_default: ServerSideEncryptionByDefaultTypeDef = {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": settings.kms_key_id,
        }
        # A bucket key cuts KMS requests (and their cost) by orders of magnitude.
        return {"ApplyServerSideEncryptionByDefault": by_default, "BucketKeyEnabled": True}
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


def lifecycle_rules(settings: StorageSettings) -> list[LifecycleRuleTypeDef]:
    """The platform's lifecycle rules.

    Data classes are selected by object tag, since keys carry ids, not classes. The rules
    that must cover every object use an empty-prefix filter: S3 allows no tag filter with
    ``AbortIncompleteMultipartUpload`` (an upload has no tags yet) or with delete-marker
    expiry, and noncurrent versions of untagged objects must expire too.
    """
    return [
        {
            "ID": RULE_PROCESSED_TO_IA,
            "Status": "Enabled",
            "Filter": {"Tag": {"Key": CLASS_TAG, "Value": ObjectClass.PROCESSED.value}},
            "Transitions": [{"Days": settings.processed_to_ia_days, "StorageClass": "STANDARD_IA"}],
        },
        {
            "ID": RULE_EXPIRE_NONCURRENT,
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": settings.noncurrent_expire_days},
            # Once every old version is gone, drop the delete marker that hid them.
            "Expiration": {"ExpiredObjectDeleteMarker": True},
        },
        {
            "ID": RULE_ABORT_MULTIPART,
            "Status": "Enabled",
            "Filter": {"Prefix": ""},
            "AbortIncompleteMultipartUpload": {
                "DaysAfterInitiation": settings.abort_multipart_days
            },
        },
    ]


def _current_rules(client: S3Client, bucket: str) -> list[LifecycleRuleOutputTypeDef]:
    try:
        return client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    except ClientError as error:
        if _error_code(error) == "NoSuchLifecycleConfiguration":
            return []
        raise


def init_bucket(settings: StorageSettings) -> BucketInitSummary:
    """Create the bucket if missing and harden it; safe to run again at every deploy.

    Turns on versioning, default encryption (SSE-S3, or SSE-KMS with ``kms_key_id``), all four
    public-access-block flags, and the rules of :func:`lifecycle_rules`. Lifecycle rules added
    by operators under other ids are kept; the platform's own are replaced.
    """
    bucket = settings.bucket
    client = s3_client(settings)
    created = _ensure_bucket(client, bucket, settings.s3_region)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    client.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [_encryption_rule(settings)]},
    )
    client.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    # The lifecycle API replaces the whole configuration, so merge with what is there.
    foreign: list[LifecycleRuleTypeDef] = [
        cast("LifecycleRuleTypeDef", rule)
        for rule in _current_rules(client, bucket)
        if rule.get("ID") not in _OWN_RULES
    ]
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={"Rules": [*foreign, *lifecycle_rules(settings)]},
    )
    return {"created": created, **describe_bucket(settings, client=client)}


def describe_bucket(
    settings: StorageSettings, *, client: S3Client | None = None
) -> BucketDescription:
    """Read back the bucket's versioning, encryption, public access block and lifecycle rules.

    Anything not configured reads as its S3 default: versioning ``"Disabled"``, no
    encryption rule, all public-access flags off, no lifecycle rules.
    """
    bucket = settings.bucket
    client = client or s3_client(settings)
    versioning = client.get_bucket_versioning(Bucket=bucket).get("Status", "Disabled")

    encryption: EncryptionDescription | None = None
    try:
        rules = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"][
            "Rules"
        ]
    except ClientError as error:
        if _error_code(error) != "ServerSideEncryptionConfigurationNotFoundError":
            raise
        rules = []
    if rules:
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {})
        encryption = {
            "algorithm": default.get("SSEAlgorithm"),
            "kms_key_id": default.get("KMSMasterKeyID"),
            "bucket_key_enabled": bool(rules[0].get("BucketKeyEnabled", False)),
        }

    try:
        block = client.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
        public_access = {flag: bool(block.get(flag, False)) for flag in _PUBLIC_ACCESS_FLAGS}
    except ClientError as error:
        if _error_code(error) != "NoSuchPublicAccessBlockConfiguration":
            raise
        public_access = dict.fromkeys(_PUBLIC_ACCESS_FLAGS, False)

    return {
        "bucket": bucket,
        "versioning": versioning,
        "encryption": encryption,
        "public_access_block": public_access,
        "lifecycle_rules": _current_rules(client, bucket),
    }
