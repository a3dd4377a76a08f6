"""Local-directory backend: the embedded shape's object store."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar

from obstore.store import LocalStore

from armillary.kit.metrics import watch_object_store_disk
from armillary.kit.storage.base import ObjectInfo, ObjectStore, checked_tags
from armillary.kit.storage.download_tokens import DownloadSigner
from armillary.kit.storage.errors import InvalidObjectKey
from armillary.kit.storage.keys import validate_key
from armillary.kit.storage.settings import StorageSettings


class LocalObjectStore(ObjectStore):
    """Objects as files under one root directory.

    There are no presigned URLs: the API serves downloads itself on a route that carries a
    token from :meth:`sign_download`. Tags and content types are not kept.
    """

    backend: ClassVar[str] = "local"
    _supports_attributes: ClassVar[bool] = False
    _supports_tags: ClassVar[bool] = False
    pipelines_puts: ClassVar[bool] = False

    def __init__(self, root: Path, settings: StorageSettings, *, signing_secret: str) -> None:
        # Objects may be private data: only the platform's user may read the tree.
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root = root.resolve(strict=True)
        watch_object_store_disk(self.root)
        self._signer = DownloadSigner(signing_secret)
        # automatic_cleanup prunes directories left empty by deletes.
        super().__init__(LocalStore(self.root, automatic_cleanup=True), settings)

    def _key(self, key: str) -> str:
        """Validate the key, then refuse it if its path resolves outside the root.

        Validation already rules out traversal; resolving as well catches what it cannot
        see, such as a symlink planted inside the root that points elsewhere.
        """
        key = validate_key(key)
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise InvalidObjectKey("object key escapes the storage root")
        return key

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy the file into place (temporary file, then an atomic rename).

        obstore's local multipart put holds parts in memory; a plain kernel-side copy keeps the
        server's memory flat whatever the file size. Content type and tags are not kept here.
        """
        key = self._key(key)
        checked_tags(tags)
        target = self.root / key
        await asyncio.to_thread(_copy_atomically, Path(path), target)
        return await self.head(key)

    def path_of(self, key: str) -> Path:
        """The file that holds ``key``, e.g. for a download route to send with sendfile."""
        return self.root / self._key(key)

    async def presigned_get_url(self, key: str, ttl: timedelta | None = None) -> None:
        """Always ``None``: the API serves local objects on a signed route instead."""
        self._key(key)
        self._ttl(ttl)

    def sign_download(self, key: str, expires_at: datetime) -> str:
        """A token that grants downloading ``key`` until ``expires_at``."""
        return self._signer.sign(self._key(key), expires_at)

    def verify_download(self, token: str, *, now: datetime | None = None) -> str:
        """The key a download token grants; raises ``InvalidDownloadToken`` or its subclass
        ``DownloadTokenExpired`` if the token is forged, tampered with or expired."""
        return self._key(self._signer.verify(token, now=now))


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".put-", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
