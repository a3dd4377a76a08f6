"""Datasets of a project and their versions: list, create, upload, inspect, download."""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urljoin

import httpx

from .errors import ArmillaryError
from .transfer import CHUNK_SIZE, MultipartFile, write_verified
from .types import Dataset, Progress, UploadResult, Version, VersionDetail

if TYPE_CHECKING:
    from .client import Client

_PAGE_SIZE = 200
# After the last byte the server still checks, profiles and stores the file before it
# answers, which for a large file takes far longer than any sensible read timeout.
_TRANSFER_TIMEOUT = httpx.Timeout(None, connect=10.0)


def _segment(value: str) -> str:
    # Names are path segments: a "/" or "%" in one must not change the route.
    return quote(value, safe="")


class Datasets:
    """``client.datasets``: the datasets API of a :class:`~armillary.sdk.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _base(self, project: str) -> str:
        return f"/api/v1/projects/{_segment(project)}/datasets"

    def _dataset(self, project: str, name: str) -> str:
        return f"{self._base(project)}/{_segment(name)}"

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        offset = 0
        while True:
            page = self._client.request(
                "GET", path, params={**(params or {}), "limit": _PAGE_SIZE, "offset": offset}
            ).json()
            items = page["items"]
            yield from items
            offset += len(items)
            if not items or offset >= page["total"]:
                return

    def list(self, project: str) -> builtins.list[Dataset]:
        """Every dataset of ``project`` (by slug) that the caller can read."""
        return [cast(Dataset, item) for item in self._pages(self._base(project))]

    def create(
        self, project: str, name: str, description: str = "", tags: Iterable[str] = ()
    ) -> Dataset:
        """Create an empty dataset; raises :class:`ArmillaryError` 409 if the name is taken."""
        body = {"name": name, "description": description, "tags": builtins.list(tags)}
        return cast(Dataset, self._client.request("POST", self._base(project), json=body).json())

    def get(self, project: str, name: str) -> Dataset:
        """One dataset, with its latest version number."""
        return cast(Dataset, self._client.request("GET", self._dataset(project, name)).json())

    def upload(
        self,
        project: str,
        name: str,
        path: str | Path,
        *,
        create: bool = True,
        format: str | None = None,
        parent: int | None = None,
        progress: Progress | None = None,
    ) -> UploadResult:
        """Upload the file at ``path`` as the next version of dataset ``name``.

        The file is streamed from disk, never read whole; ``progress(bytes_sent, total)`` is
        called as it goes. ``format`` (``csv``, ``parquet`` or ``jsonl``) defaults to the
        server's guess from the file name; ``parent`` is the number of the version this one
        derives from. With ``create`` a missing dataset is created first; if the upload then
        fails (refused, cut off, interrupted), the dataset this call created is deleted again,
        so a failed first upload leaves no empty dataset behind. Bytes identical to an
        existing version return that version with ``created=False``.
        """
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"No such file: {source}")
        created_here = self._ensure_dataset(project, name, create=create)
        try:
            return self._post_version(project, name, source, format, parent, progress)
        except BaseException:
            if created_here:
                self._discard_if_empty(project, name)
            raise

    def _ensure_dataset(self, project: str, name: str, *, create: bool) -> bool:
        """Whether this call created the dataset. Checking first answers a missing dataset
        (or an expired token, which the client then renews) before any byte of a possibly
        large body is sent."""
        try:
            self.get(project, name)
            return False
        except ArmillaryError as exc:
            if exc.status != 404 or not create:
                raise
        try:
            self.create(project, name)
        except ArmillaryError as race:
            if race.status != 409:  # created meanwhile by someone else: theirs, not ours
                raise
            return False
        return True

    def _discard_if_empty(self, project: str, name: str) -> None:
        # Best effort, and only while it is still empty: a version someone else added
        # meanwhile, or ours if the server stored it before the connection broke, keeps it.
        with contextlib.suppress(ArmillaryError):
            if not self.versions(project, name):
                self._client.request("DELETE", self._dataset(project, name)).close()

    def _post_version(
        self,
        project: str,
        name: str,
        source: Path,
        format: str | None,
        parent: int | None,
        progress: Progress | None,
    ) -> UploadResult:
        fields: dict[str, str] = {}
        if format is not None:
            fields["format"] = format
        if parent is not None:
            fields["parent"] = str(parent)

        # Iterating the body reads the file afresh, so a retried request sends it whole again.
        multipart = MultipartFile(source, fields, progress=progress)
        response = self._client._send(
            "POST",
            f"{self._dataset(project, name)}/versions",
            body=lambda: multipart,
            headers=multipart.headers,
            timeout=_TRANSFER_TIMEOUT,
        )
        return UploadResult(cast(Version, response.json()), response.status_code == 201)

    def versions(
        self, project: str, name: str, *, include_deleted: bool = False
    ) -> builtins.list[Version]:
        """Every version of a dataset, newest first; deleted ones only if asked."""
        params = {"include_deleted": "true"} if include_deleted else {}
        return [
            cast(Version, item)
            for item in self._pages(f"{self._dataset(project, name)}/versions", params)
        ]

    def version(self, project: str, name: str, number: int) -> VersionDetail:
        """One version, with its schema and per-column profile."""
        path = f"{self._dataset(project, name)}/versions/{int(number)}"
        return cast(VersionDetail, self._client.request("GET", path).json())

    def delete_version(self, project: str, name: str, number: int) -> None:
        """Delete a version (soft: it leaves lists and downloads but stays for lineage)."""
        path = f"{self._dataset(project, name)}/versions/{int(number)}"
        self._client.request("DELETE", path).close()

    def download(
        self,
        project: str,
        name: str,
        number: int,
        dest_path: str | Path,
        progress: Progress | None = None,
    ) -> Path:
        """Download a version's bytes to ``dest_path`` and return the path written.

        If ``dest_path`` is a directory the file is named ``<dataset>-v<n>.<format>`` inside
        it. The bytes stream to disk; a redirect to a presigned object-store URL is followed
        without sending the bearer token there. The file appears only once its size and
        SHA-256 match the version's record; otherwise :class:`ChecksumMismatch` is raised.
        """
        meta = self.version(project, name, number)
        dest = Path(dest_path)
        if dest.is_dir():
            dest = dest / f"{meta['dataset']}-v{meta['number']}.{meta['format']}"
        path = f"{self._dataset(project, name)}/versions/{int(number)}/content"
        response = self._client._send("GET", path, stream=True, timeout=_TRANSFER_TIMEOUT)
        try:
            if response.is_redirect:
                location = response.headers.get("Location")
                if not location:
                    raise ArmillaryError(
                        response.status_code, "Bad redirect", "Redirect without a Location"
                    )
                response.close()
                response = self._client._fetch_external(urljoin(str(response.url), location))
            write_verified(
                response.iter_bytes(CHUNK_SIZE),
                dest,
                size=meta["size_bytes"],
                sha256=meta["sha256"],
                progress=progress,
            )
        finally:
            response.close()
        return dest
