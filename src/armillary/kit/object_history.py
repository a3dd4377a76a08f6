"""A second copy of the object store's history, in a backup bucket (``armillary backup
objects-sync``).

Every version of every key of the platform's bucket, and every deletion, is copied into the
backup bucket under a key of its own, ``history/<key>/<modified>~<kind>~<version id>``, where
``<modified>`` is the version's time in the platform's bucket. Keys of their own, rather than
versions of one key, keep the original times, which a point-in-time restore needs (a copy's own time
is the moment it was copied) and which a listing returns without reading each object.

Retention: a version older than the retention window is kept only while it is its key's
newest one at the window's start (it is what a restore to that moment brings back); older
ones are removed, and are not copied again. The backup bucket may live in another region or
account, be locked with S3 Object Lock, or be written by a role that cannot delete; the
copy never deletes because the platform's bucket lost something.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from armillary.kit.storage import StorageSettings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CopySourceTypeDef

HISTORY = "history/"
_STAMP = "%Y%m%dT%H%M%S.%fZ"

Kind = Literal["object", "deleted"]


@dataclass(frozen=True)
class Entry:
    """One version of a key (or its deletion) at the moment it was made."""

    key: str
    modified: datetime
    kind: Kind
    version_id: str

    @property
    def history_key(self) -> str:
        stamp = self.modified.astimezone(UTC).strftime(_STAMP)
        return f"{HISTORY}{self.key}/{stamp}~{self.kind}~{self.version_id}"

    @classmethod
    def parse(cls, history_key: str) -> Entry | None:
        """The entry a backup bucket's key names; None for a key that is not one."""
        if not history_key.startswith(HISTORY) or "/" not in history_key[len(HISTORY) :]:
            return None
        key, leaf = history_key[len(HISTORY) :].rsplit("/", 1)
        parts = leaf.split("~", 2)
        if len(parts) != 3 or parts[1] not in ("object", "deleted"):
            return None
        try:
            modified = datetime.strptime(parts[0], _STAMP).replace(tzinfo=UTC)
        except ValueError:
            return None
        kind: Kind = "object" if parts[1] == "object" else "deleted"
        return cls(key, modified, kind, parts[2])


@dataclass
class SyncReport:
    copied: int = 0
    deletions: int = 0
    already: int = 0
    pruned: int = 0


def backup_settings(settings: StorageSettings, bucket: str, region: str | None) -> StorageSettings:
    """The platform's S3 settings pointed at the backup bucket (another region if given)."""
    return settings.model_copy(
        update={"s3_bucket": bucket, "s3_region": region or settings.s3_region}
    )


@dataclass
class BucketHistory:
    entries: list[Entry]
    # Each key's current version id; a key whose newest entry is a deletion is absent.
    current: dict[str, str]


def source_history(client: S3Client, bucket: str) -> BucketHistory:
    """Every version and deletion of the platform's bucket, and what is current."""
    history = BucketHistory([], {})
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            version_id = version.get("VersionId") or "null"
            history.entries.append(
                Entry(version["Key"], version["LastModified"], "object", version_id)
            )
            if version["IsLatest"]:
                history.current[version["Key"]] = version_id
        for marker in page.get("DeleteMarkers", []):
            history.entries.append(
                Entry(marker["Key"], marker["LastModified"], "deleted", marker["VersionId"])
            )
    return history


def backup_entries(client: S3Client, bucket: str) -> list[Entry]:
    """What the backup bucket holds of the platform's history."""
    found: list[Entry] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=HISTORY):
        for item in page.get("Contents", []):
            entry = Entry.parse(item["Key"])
            if entry is not None:
                found.append(entry)
    return found


def needed(entries: Iterable[Entry], horizon: datetime | None) -> set[Entry]:
    """The entries a restore to any moment after ``horizon`` can use: all newer than it,
    and each key's newest one at it unless that is a deletion."""
    if horizon is None:
        return set(entries)
    by_key: dict[str, list[Entry]] = {}
    for entry in entries:
        by_key.setdefault(entry.key, []).append(entry)
    kept: set[Entry] = set()
    for versions in by_key.values():
        kept.update(v for v in versions if v.modified > horizon)
        older = [v for v in versions if v.modified <= horizon]
        if older:
            at_horizon = max(older, key=lambda v: v.modified)
            if at_horizon.kind == "object":
                kept.add(at_horizon)
    return kept


def sync(
    source: StorageSettings,
    backup: StorageSettings,
    *,
    retention: timedelta | None = None,
    now: datetime | None = None,
) -> SyncReport:
    """Copy every version and deletion of ``source``'s bucket not yet in ``backup``'s, then
    remove from the backup what ``retention`` no longer needs. Safe to run again."""
    from armillary.kit.storage.admin import s3_client

    source_client, backup_client = s3_client(source), s3_client(backup)
    horizon = None if retention is None else (now or datetime.now(UTC)) - retention
    held = backup_entries(backup_client, backup.bucket)
    held_keys = {entry.history_key for entry in held}
    report = SyncReport()
    wanted = needed([*source_history(source_client, source.bucket).entries, *held], horizon)
    for entry in sorted(wanted, key=lambda e: (e.key, e.modified)):
        if entry.history_key in held_keys:
            report.already += 1
        elif entry.kind == "deleted":
            backup_client.put_object(Bucket=backup.bucket, Key=entry.history_key, Body=b"")
            report.deletions += 1
        else:
            copy_source: CopySourceTypeDef = {
                "Bucket": source.bucket,
                "Key": entry.key,
                "VersionId": entry.version_id,
            }
            # A managed copy: multipart above 8 MiB, so objects past 5 GiB copy too.
            backup_client.copy(
                copy_source, backup.bucket, entry.history_key, SourceClient=source_client
            )
            report.copied += 1
    for entry in held:
        if entry not in wanted:
            backup_client.delete_object(Bucket=backup.bucket, Key=entry.history_key)
            report.pruned += 1
    return report
