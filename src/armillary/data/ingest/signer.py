"""Presigned GETs for objects in S3 buckets other than the platform's own, so that a task can
ingest them without holding S3 credentials. Signed with the platform's storage credentials
(endpoint, region, keys from ``StorageSettings``); only allow-listed buckets are signed."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from armillary.kit.db import utcnow
from armillary.kit.errors import Forbidden, Unprocessable
from armillary.kit.storage import StorageSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_SCHEME: Final = "s3://"
# S3's naming rules for (new) buckets: 3-63 lower-case letters, digits, dots and hyphens.
_BUCKET: Final = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
MAX_KEY_BYTES: Final = 1024


class BucketNotAllowed(Forbidden):
    # The refusal is audited with its own entry.
    keep_changes = True


@dataclass(frozen=True, slots=True)
class S3Object:
    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{_SCHEME}{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> S3Object:
    """``s3://bucket/key`` (422 when malformed): a valid bucket name and a non-empty key
    without ``..`` segments or control characters. Everything after the bucket is the key,
    ``?`` and ``#`` included, as S3 has it."""
    if not uri.startswith(_SCHEME):
        raise Unprocessable("The URI must look like s3://bucket/key")
    bucket, slash, key = uri[len(_SCHEME) :].partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise Unprocessable("The URI does not name a valid S3 bucket")
    if not slash or not key:
        raise Unprocessable("The URI must name an object: s3://bucket/key")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise Unprocessable(f"An S3 key is at most {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise Unprocessable("The object key contains control characters")
    if ".." in key.split("/"):
        raise Unprocessable("The object key must not contain '..' segments")
    return S3Object(bucket, key)


@dataclass
class ExternalObjectSigner:
    storage_settings: StorageSettings
    allowed_buckets: frozenset[str]
    ttl_seconds: int
    _client: S3Client | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def check_allowed(self, target: S3Object) -> None:
        if target.bucket not in self.allowed_buckets:
            raise BucketNotAllowed("Bucket not allowed for ingest")

    async def presign_get(self, target: S3Object) -> tuple[str, datetime]:
        """A presigned GET URL for an allowed object and when it expires. Signing is local:
        whether the object exists shows when the URL is fetched."""
        self.check_allowed(target)
        client = await self._s3()
        expires_at = utcnow() + timedelta(seconds=self.ttl_seconds)
        url = client.generate_presigned_url(
            "get_object",
            Params={"Bucket": target.bucket, "Key": target.key},
            ExpiresIn=self.ttl_seconds,
        )
        return url, expires_at

    async def _s3(self) -> S3Client:
        # Building a boto3 client takes tens of milliseconds (it loads the service model):
        # once, off the event loop.
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    from armillary.kit.storage.admin import s3_client

                    self._client = await asyncio.to_thread(s3_client, self.storage_settings)
        return self._client
