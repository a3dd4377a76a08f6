"""S3 backend, for AWS and any S3-compatible server (MinIO, Ceph, moto in tests)."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Final

from obstore.store import S3Store

from armillary.kit.storage.base import ObjectStore
from armillary.kit.storage.keys import attachment_disposition
from armillary.kit.storage.settings import StorageSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from obstore.store import ClientConfig, S3Config

# SigV4 presigned URLs cannot outlive this.
_MAX_PRESIGN_TTL: Final = timedelta(days=7)


def _s3_config(settings: StorageSettings) -> S3Config:
    config: S3Config = {"region": settings.s3_region}
    if settings.s3_endpoint_url:
        config["endpoint"] = settings.s3_endpoint_url
    if settings.s3_access_key_id and settings.s3_secret_access_key:
        config["access_key_id"] = settings.s3_access_key_id
        config["secret_access_key"] = settings.s3_secret_access_key.get_secret_value()
    return config


def _client_options(settings: StorageSettings) -> ClientConfig:
    options: ClientConfig = {
        "allow_http": settings.s3_allow_http,
        "connect_timeout": timedelta(seconds=settings.connect_timeout_seconds),
        "read_timeout": timedelta(seconds=settings.read_timeout_seconds),
        "timeout": timedelta(seconds=settings.request_timeout_seconds),
    }
    if settings.s3_ca_file is not None:
        options["root_certificate"] = settings.s3_ca_file.read_bytes()
    return options


class S3ObjectStore(ObjectStore):
    """Objects in one S3 bucket; tags and content types are stored with each object."""

    backend: ClassVar[str] = "s3"

    def __init__(self, settings: StorageSettings) -> None:
        # Path-style requests (obstore's default) work on AWS and on every S3-compatible server.
        store = S3Store(
            settings.bucket,
            config=_s3_config(settings),
            client_options=_client_options(settings),
        )
        super().__init__(store, settings)

    @cached_property
    def _signer(self) -> S3Client:
        # botocore signs: obstore's presign cannot add the response-content-disposition
        # parameter, and without it a browser may render a downloaded object inline. Built on
        # first use (a client costs tens of milliseconds) and only ever used to sign locally.
        from armillary.kit.storage.admin import s3_client

        return s3_client(self._settings)

    async def presigned_get_url(self, key: str, ttl: timedelta | None = None) -> str:
        """A SigV4 presigned GET URL for ``key``, valid for ``ttl`` (default from settings).

        The URL makes S3 answer with ``Content-Disposition: attachment``. Signing is local: it
        neither checks that the object exists nor contacts S3.
        """
        key = self._key(key)
        chosen = self._ttl(ttl)
        if chosen > _MAX_PRESIGN_TTL:
            raise ValueError("S3 presigned URLs cannot be valid for more than 7 days")
        return self._signer.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self._settings.bucket,
                "Key": key,
                "ResponseContentDisposition": attachment_disposition(key),
            },
            ExpiresIn=int(chosen.total_seconds()),
        )
