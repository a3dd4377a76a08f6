"""Point-in-time recovery: PostgreSQL through pgBackRest (full backups plus continuous WAL
archiving, encrypted, with retention), and the object store's versions as of the same moment.

pgBackRest runs on the database host as the server's user; :func:`pgbackrest_config` renders
its configuration for an S3 repository (or a directory), and the operations guide lists the
commands. :func:`restore_objects_as_of` then brings a versioned S3 bucket back to the moment
the database was restored to: every key's newest version at or before it becomes current
again, and keys that did not exist yet are deleted (a delete marker: nothing is lost).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from armillary.kit.object_history import Entry, backup_entries, source_history
from armillary.kit.storage import StorageSettings

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CopySourceTypeDef


class PointInTimeError(Exception):
    """The store cannot be brought back to a moment (no versions, or a bad moment)."""


@dataclass(frozen=True)
class Repository:
    """Where pgBackRest keeps backups and WAL: an S3 bucket (production) or a directory."""

    path: str = "/pgbackrest"
    s3_bucket: str | None = None
    s3_endpoint: str | None = None
    s3_region: str = "us-east-1"
    # "auto": the instance or pod role's credentials (IRSA); "shared": keys in the file.
    s3_key_type: str = "auto"
    s3_key: str | None = None
    s3_key_secret: str | None = None
    # "path" for S3-compatible servers without virtual-host buckets; a port and a CA for a
    # private endpoint.
    s3_uri_style: str = "host"
    s3_port: int | None = None
    s3_ca_file: Path | None = None


@dataclass(frozen=True)
class DatabaseHost:
    """The database host as a backup job elsewhere reaches it: its ``pgbackrest server``
    over TLS, with this job's client certificate (pgBackRest's ``pg1-host-type=tls``)."""

    host: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    port: int = 8432


def cipher_pass_conf(cipher_pass: str) -> str:
    """``conf.d/secrets.conf``: the repository's cipher pass, in a file of its own (0600,
    PostgreSQL's user) or a Kubernetes Secret, so the rendered configuration holds none."""
    if len(cipher_pass) < 32:
        raise ValueError("the repository cipher pass must be at least 32 characters")
    return f"[global]\nrepo1-cipher-pass={cipher_pass}\n"


def pgbackrest_config(
    *,
    stanza: str,
    pg_data: Path,
    pg_port: int,
    pg_socket_dir: Path | None,
    repo: Repository,
    cipher_pass: str | None,
    retention_full: int = 2,
    retention_diff: int = 7,
    work_dir: Path,
    pg_host: DatabaseHost | None = None,
) -> str:
    """pgbackrest.conf for one cluster: AES-256 encrypted repository, ``retention_full``
    full and ``retention_diff`` differential backups kept (with the WAL they need), logs and
    locks under ``work_dir``. Without ``cipher_pass`` the file holds no secret: pgBackRest
    then reads it from ``conf.d/secrets.conf`` (:func:`cipher_pass_conf`) or from
    ``PGBACKREST_REPO1_CIPHER_PASS`` (as it reads S3 keys from
    ``PGBACKREST_REPO1_S3_KEY``/``_SECRET``). ``pg_host``: this file is for a backup job that
    reaches the database host over TLS."""
    if cipher_pass is not None and len(cipher_pass) < 32:
        raise ValueError("the repository cipher pass must be at least 32 characters")
    secret = (
        [f"repo1-cipher-pass={cipher_pass}"]
        if cipher_pass is not None
        else ["# repo1-cipher-pass: in conf.d/secrets.conf, or PGBACKREST_REPO1_CIPHER_PASS"]
    )
    lines = [
        "[global]",
        "repo1-cipher-type=aes-256-cbc",
        *secret,
        f"repo1-retention-full={retention_full}",
        f"repo1-retention-diff={retention_diff}",
        f"repo1-path={repo.path}",
        "start-fast=y",
        "compress-type=zst",
        "log-level-console=warn",
        "log-level-file=info",
        f"log-path={work_dir / 'log'}",
        f"lock-path={work_dir / 'lock'}",
        f"spool-path={work_dir / 'spool'}",
    ]
    if repo.s3_bucket:
        lines += [
            "repo1-type=s3",
            f"repo1-s3-bucket={repo.s3_bucket}",
            f"repo1-s3-region={repo.s3_region}",
            f"repo1-s3-endpoint={repo.s3_endpoint or f's3.{repo.s3_region}.amazonaws.com'}",
            f"repo1-s3-key-type={repo.s3_key_type}",
            f"repo1-s3-uri-style={repo.s3_uri_style}",
        ]
        if repo.s3_port is not None:
            lines.append(f"repo1-storage-port={repo.s3_port}")
        if repo.s3_ca_file is not None:
            lines.append(f"repo1-storage-ca-file={repo.s3_ca_file}")
        if repo.s3_key_type == "shared" and repo.s3_key is not None:
            lines += [f"repo1-s3-key={repo.s3_key}", f"repo1-s3-key-secret={repo.s3_key_secret}"]
    else:
        lines.append("repo1-type=posix")
    lines += ["", f"[{stanza}]", f"pg1-path={pg_data}", f"pg1-port={pg_port}"]
    if pg_socket_dir is not None:
        lines.append(f"pg1-socket-path={pg_socket_dir}")
    if pg_host is not None:
        lines += [
            f"pg1-host={pg_host.host}",
            "pg1-host-type=tls",
            f"pg1-host-port={pg_host.port}",
            f"pg1-host-ca-file={pg_host.ca_file}",
            f"pg1-host-cert-file={pg_host.cert_file}",
            f"pg1-host-key-file={pg_host.key_file}",
        ]
    return "\n".join(lines) + "\n"


def archive_conf(config: Path, stanza: str) -> str:
    """:func:`archive_settings` as postgresql.conf lines (for an ``include`` file)."""
    quoted = {
        name: value.replace("'", "''") for name, value in archive_settings(config, stanza).items()
    }
    lines = [f"{name} = '{value}'" for name, value in quoted.items()]
    return "\n".join(lines) + "\n"


def pgbackrest_target(moment: datetime) -> str:
    """``moment`` as ``restore --target`` takes it: UTC, to the millisecond."""
    if moment.tzinfo is None:
        raise PointInTimeError("give the moment with its time zone (e.g. ...Z)")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M:%S.") + f"{utc.microsecond // 1000:03d}+00"


def config_option(config: Path) -> str:
    """How a pgbackrest command names its configuration: for a ``pgbackrest.conf``, its
    directory, so that ``conf.d/*.conf`` beside it (the cipher pass, kept apart from the
    rendered file) is read too; any other file alone."""
    if config.name == "pgbackrest.conf":
        return f"--config-path={config.parent}"
    return f"--config={config}"


def archive_settings(config: Path, stanza: str) -> dict[str, str]:
    """The postgresql.conf settings that archive every WAL segment through pgBackRest."""
    command = f"pgbackrest {config_option(config)} --stanza={stanza} archive-push %p"
    return {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": command,
        # A quiet database still archives at least this often: the RPO's upper bound.
        "archive_timeout": "60",
    }


def restore_objects_as_of(
    settings: StorageSettings, moment: datetime, backup: StorageSettings | None = None
) -> dict[str, int]:
    """Make each key's newest version at or before ``moment`` current again, and delete keys
    that had no version yet (or were deleted) by then. Returns counts of each.

    With ``backup`` (the bucket ``objects-sync`` copies into), the history is the union of
    both buckets': a version the platform's bucket lost, or the whole bucket, comes back
    from the backup copy (counted as ``from_backup``)."""
    if settings.backend != "s3":
        raise PointInTimeError(
            "objects can be brought back to a moment only on a versioned S3 bucket"
        )
    if moment.tzinfo is None:
        raise PointInTimeError("give the moment with its time zone (e.g. ...Z)")
    from armillary.kit.storage.admin import s3_client

    client = s3_client(settings)
    bucket = settings.bucket
    live = source_history(client, bucket)
    history: dict[str, dict[str, tuple[Entry, bool]]] = {}
    backup_client = None
    if backup is not None:
        backup_client = s3_client(backup)
        for entry in backup_entries(backup_client, backup.bucket):
            history.setdefault(entry.key, {})[entry.version_id] = (entry, True)
    for entry in live.entries:
        # The platform's own version wins: copying inside one bucket is cheaper.
        history.setdefault(entry.key, {})[entry.version_id] = (entry, False)
    counts = {"kept": 0, "reverted": 0, "deleted": 0, "from_backup": 0}
    for key, versions in sorted(history.items()):
        before = [item for item in versions.values() if item[0].modified <= moment]
        wanted, in_backup = max(before, key=lambda i: i[0].modified) if before else (None, False)
        now_current = live.current.get(key)
        if wanted is None or wanted.kind == "deleted":
            if now_current is not None:
                client.delete_object(Bucket=bucket, Key=key)
                counts["deleted"] += 1
            else:
                counts["kept"] += 1
        elif now_current == wanted.version_id:
            counts["kept"] += 1
        elif in_backup and backup is not None:
            copy_source: CopySourceTypeDef = {"Bucket": backup.bucket, "Key": wanted.history_key}
            client.copy(copy_source, bucket, key, SourceClient=backup_client)
            counts["from_backup"] += 1
        else:
            source: CopySourceTypeDef = {
                "Bucket": bucket,
                "Key": key,
                "VersionId": wanted.version_id,
            }
            client.copy(source, bucket, key)
            counts["reverted"] += 1
    return counts
