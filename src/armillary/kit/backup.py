"""Backups with one consistent point: the database and the objects its rows reference, as of
the same moment T (``armillary backup``).

* PostgreSQL: a REPEATABLE READ transaction exports its snapshot; ``pg_dump --snapshot``
  dumps exactly what that transaction sees, and the references to objects are read in the
  same transaction. T is that transaction's start.
* SQLite (the embedded shape): SQLite's online backup API copies the file; the references
  are read from the copy.
* Objects: every object a row of the dump references, and the objects under the prefixes
  rows own (log chunks, request samples) written up to T, are copied into the backup with
  their SHA-256. Objects are immutable under their keys (ADR 0010), so copying after T
  copies what T saw.
* The home directory's own files (the platform secret, service keys): ``kit.backup_home``.
* The audit checkpoint kept outside the database is copied apart from the backup (another
  directory, ideally another volume or account), before the database: it is then a lower
  bound of the chain the backup holds, and the evidence if the database was truncated or
  rolled back. A restore refuses a backup whose chain ends before that checkpoint unless
  told to accept it, and then sets the checkpoint from the restored chain head.

A restore puts the home files back, brings back the database, puts the objects back, and
deletes the objects no restored row owns (those written after T), so no row points at a
missing object and nothing after T survives. Which objects rows own comes from each service
(``kit.storage.doctor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.backup_home import HomeFile, check_home, copy_home, escapes_home, restore_home
from armillary.kit.db import Database, utcnow
from armillary.kit.storage import ObjectStore
from armillary.kit.storage.doctor import (
    References,
    ReferenceSource,
    examine,
    gather_references,
    repair,
)

FORMAT = 2  # 2: home files, and the audit checkpoint kept apart
MANIFEST = "manifest.json"
DATABASE_DUMP = "database.dump"
DATABASE_SQLITE = "database.sqlite"
CHECKPOINT_SUFFIX = ".audit-checkpoint.json"
OBJECTS = "objects"
_SNAPSHOT_ID = re.compile(r"^[0-9A-F]+-[0-9A-F]+-[0-9]+$")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ChainHead:
    """Where the audit chain ends: its last record's number and hash."""

    seq: int
    hash: str


# Reads the audit chain's head in a session (identity's table; kit imports no service).
ReadChainHead = Callable[[AsyncSession], Awaitable[ChainHead | None]]
# After the restore: checks the restored chain against the checkpoint kept apart (its path,
# or None) and sets the outside audit checkpoint from it; returns the accepted problem.
AfterRestore = Callable[[Database, Path | None], Awaitable[str | None]]


class BackupError(Exception):
    """A backup cannot be made, verified or restored; the message says why."""


@dataclass
class ObjectEntry:
    key: str
    size: int
    sha256: str


@dataclass
class Manifest:
    id: str
    taken_at: datetime
    database_kind: str  # "postgresql" or "sqlite"
    database_file: str
    database_sha256: str
    database_size: int
    objects: list[ObjectEntry] = field(default_factory=list)
    # Referenced objects the store no longer held when the backup was made.
    missing: list[str] = field(default_factory=list)
    # The platform's own files of the home directory (secret, service keys).
    home_files: list[HomeFile] = field(default_factory=list)
    # Whether the audit checkpoint was copied apart, and the chain head the database held.
    checkpoint: bool = False
    audit_head: ChainHead | None = None
    format: int = FORMAT

    def write(self, directory: Path) -> None:
        data = asdict(self)
        data["taken_at"] = self.taken_at.isoformat()
        (directory / MANIFEST).write_text(json.dumps(data, indent=1, sort_keys=True))

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        try:
            data = json.loads((directory / MANIFEST).read_text())
            if data.get("format") != FORMAT:
                raise BackupError(f"backup format {data.get('format')} is not supported")
            data["taken_at"] = datetime.fromisoformat(data["taken_at"])
            data["objects"] = [ObjectEntry(**entry) for entry in data["objects"]]
            data["home_files"] = [HomeFile(**entry) for entry in data["home_files"]]
            if data["audit_head"] is not None:
                data["audit_head"] = ChainHead(**data["audit_head"])
            manifest = cls(**data)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{directory} holds no readable backup manifest") from exc
        if any(escapes_home(entry) for entry in manifest.home_files):
            raise BackupError(f"{directory}'s manifest names a file outside the home directory")
        return manifest

    @property
    def object_bytes(self) -> int:
        return sum(entry.size for entry in self.objects)


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str]
    objects: int
    taken_at: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _libpq(db: Database) -> tuple[list[str], dict[str, str]]:
    """Connection options for pg_dump/pg_restore, with the password in the environment
    (never in argv, which other users can read) and the database's TLS settings."""
    parsed = make_url(db.url)
    args = ["--host", parsed.host or "127.0.0.1", "--port", str(parsed.port or 5432)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = {**os.environ, "PGCONNECT_TIMEOUT": "10", **db.libpq_env}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return [*args, "--dbname", str(parsed.database)], env


def _pg_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed (Debian: postgresql-client)")
    return found


def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        # pg_dump's own message (no password: it never had one on its command line).
        raise BackupError(f"{what} failed: {done.stderr.strip()[-2000:]}")


async def _copy_objects(
    store: ObjectStore, references: References, taken_at: datetime, into: Path
) -> tuple[list[ObjectEntry], list[str]]:
    entries: list[ObjectEntry] = []
    missing: list[str] = []
    keys = set(references.keys)
    for prefix in sorted(references.prefixes):
        async for info in store.list(prefix):
            if info.last_modified <= taken_at:
                keys.add(info.key)
    for key in sorted(keys):
        target = into / OBJECTS / key
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            info = await store.get_to_file(key, target)
        except FileNotFoundError:
            missing.append(key)
            continue
        entries.append(ObjectEntry(key, info.size, await asyncio.to_thread(_sha256, target)))
    return entries, missing


async def create(
    db: Database,
    store: ObjectStore,
    sources: Iterable[ReferenceSource],
    output: Path,
    *,
    home: Path,
    home_excluded: Iterable[Path] = (),
    checkpoint_file: Path | None = None,
    checkpoint_dir: Path | None = None,
    read_chain_head: ReadChainHead | None = None,
) -> Manifest:
    """Back up the database and the objects it references into ``output`` (new or empty),
    with the home directory's files but ``home_excluded``; the audit checkpoint
    (``checkpoint_file``) goes to ``checkpoint_dir``, apart from ``output``."""
    await asyncio.to_thread(_prepare_output, output)
    backup_id = utcnow().strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(4)
    # Copied before the database, so the chain the backup holds cannot end before it.
    has_checkpoint = await asyncio.to_thread(
        _keep_checkpoint_apart, checkpoint_file, checkpoint_dir, backup_id, output
    )
    sources = list(sources)
    if db.is_sqlite:
        taken_at, references, head, database_file = await _sqlite_backup(
            db, sources, output, read_chain_head
        )
    else:
        taken_at, references, head, database_file = await _postgres_backup(
            db, sources, output, read_chain_head
        )
    objects, missing = await _copy_objects(store, references, taken_at, output)
    # Neither the backup nor the checkpoint's copy is backed up into itself.
    excluded = [*home_excluded, output, *([checkpoint_dir] if checkpoint_dir else [])]
    home_files = await asyncio.to_thread(copy_home, home, excluded, output)
    dump = output / database_file
    manifest = Manifest(
        id=backup_id,
        taken_at=taken_at,
        database_kind="sqlite" if db.is_sqlite else "postgresql",
        database_file=database_file,
        database_sha256=await asyncio.to_thread(_sha256, dump),
        database_size=dump.stat().st_size,
        objects=objects,
        missing=missing,
        home_files=home_files,
        checkpoint=has_checkpoint,
        audit_head=head,
    )
    manifest.write(output)
    return manifest


def _prepare_output(output: Path) -> None:
    if output.exists() and any(output.iterdir()):
        raise BackupError(f"{output} is not empty")
    output.mkdir(mode=0o700, parents=True, exist_ok=True)


def checkpoint_copy(checkpoint_dir: Path, backup_id: str) -> Path:
    """Where a backup's audit checkpoint is kept apart."""
    return checkpoint_dir / f"{backup_id}{CHECKPOINT_SUFFIX}"


def _keep_checkpoint_apart(
    checkpoint_file: Path | None, checkpoint_dir: Path | None, backup_id: str, output: Path
) -> bool:
    if checkpoint_file is None or not checkpoint_file.exists():
        return False  # no audit record was ever written: nothing to vouch for
    if checkpoint_dir is None:
        raise BackupError(
            "the audit checkpoint is kept apart from the backup: give --checkpoint-output DIR "
            "or set ARMILLARY_BACKUP_CHECKPOINT_DIR (on another volume or account)"
        )
    apart, backup = checkpoint_dir.resolve(), output.resolve()
    if apart == backup or backup in apart.parents or apart in backup.parents:
        raise BackupError(
            "the audit checkpoint's directory must be apart from the backup's, neither inside "
            "the other: whoever can rewrite the backup must not also rewrite its evidence"
        )
    checkpoint_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = checkpoint_copy(checkpoint_dir, backup_id)
    content = checkpoint_file.read_bytes()
    # Never replaces a file: a checkpoint kept apart is evidence.
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(content)
    return True


async def _postgres_backup(
    db: Database, sources: list[ReferenceSource], output: Path, read_head: ReadChainHead | None
) -> tuple[datetime, References, ChainHead | None, str]:
    async with db.engine.connect() as connection:
        conn = await connection.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            row = (await conn.execute(text("SELECT pg_export_snapshot(), now()"))).one()
            snapshot, taken_at = str(row[0]), row[1]
            if not _SNAPSHOT_ID.match(snapshot):
                raise BackupError("PostgreSQL returned an unexpected snapshot id")
            args, env = _libpq(db)
            argv = [_pg_tool("pg_dump"), "--format=custom", f"--snapshot={snapshot}", "--no-owner"]
            argv += ["--file", str(output / DATABASE_DUMP), *args]
            await asyncio.to_thread(_run, argv, env, "pg_dump")
            # The references in the same snapshot as the dump: exactly its rows' objects.
            session = AsyncSession(bind=conn)
            references = await gather_references(session, sources)
            head = await read_head(session) if read_head else None
    return taken_at, references, head, DATABASE_DUMP


def _sqlite_path(db: Database) -> Path:
    database = make_url(db.url).database
    if not database:
        raise BackupError("the SQLite database has no file")
    return Path(database)


async def _sqlite_backup(
    db: Database, sources: list[ReferenceSource], output: Path, read_head: ReadChainHead | None
) -> tuple[datetime, References, ChainHead | None, str]:
    target = output / DATABASE_SQLITE

    def copy() -> None:
        with (
            contextlib.closing(sqlite3.connect(_sqlite_path(db))) as source,
            contextlib.closing(sqlite3.connect(target)) as copy_,
        ):
            source.backup(copy_)

    await asyncio.to_thread(copy)
    taken_at = utcnow()
    copy_db = Database(f"sqlite+aiosqlite:///{target.resolve()}")
    try:
        async with copy_db.read_only() as session:
            references = await gather_references(session, sources)
            head = await read_head(session) if read_head else None
    finally:
        await copy_db.dispose()
    return taken_at, references, head, DATABASE_SQLITE


def verify(directory: Path) -> VerifyReport:
    """Check a backup without restoring it: every file is there with its SHA-256, the
    database file reads, and no referenced object was missing when it was made."""
    manifest = Manifest.read(directory)
    problems: list[str] = []
    database = directory / manifest.database_file
    if not database.exists():
        problems.append(f"the database file {manifest.database_file} is missing")
    elif _sha256(database) != manifest.database_sha256:
        problems.append(f"the database file {manifest.database_file} was changed")
    elif manifest.database_kind == "postgresql":
        listing = subprocess.run(  # noqa: S603
            [_pg_tool("pg_restore"), "--list", str(database)], capture_output=True, check=False
        )
        if listing.returncode != 0:
            problems.append("pg_restore cannot read the database dump")
    else:
        with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            if conn.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                problems.append("the SQLite copy fails its integrity check")
    for entry in manifest.objects:
        path = directory / OBJECTS / entry.key
        if not path.exists():
            problems.append(f"object {entry.key} is missing from the backup")
        elif _sha256(path) != entry.sha256:
            problems.append(f"object {entry.key} was changed")
    problems += check_home(directory, manifest.home_files)
    problems += [f"object {key} was already missing from the store" for key in manifest.missing]
    return VerifyReport(
        not problems, problems, len(manifest.objects), manifest.taken_at.isoformat()
    )


def list_backups(root: Path) -> list[tuple[Path, Manifest]]:
    """The backups directly under ``root``, newest first."""
    found = []
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if (child / MANIFEST).exists():
            with contextlib.suppress(BackupError):
                found.append((child, Manifest.read(child)))
    return sorted(found, key=lambda item: item[1].taken_at, reverse=True)


async def restore(
    directory: Path,
    db: Database,
    open_store: Callable[[], ObjectStore],
    sources: Iterable[ReferenceSource],
    *,
    home: Path,
    checkpoint_dir: Path | None,
    accept_truncation: bool = False,
    after_restore: AfterRestore | None = None,
) -> dict[str, Any]:
    """Bring the home directory's files, the database and the store back to the backup's
    moment T (see the module docstring). The database and store are those of the settings:
    a database dropped since is created again; the store is opened (``open_store``) once
    the home files, which may hold its signing secret, are back.

    The audit checkpoint kept apart (in ``checkpoint_dir``) is compared with the chain the
    backup holds before anything is replaced: a chain that ends before it was truncated or
    rolled back before the backup, and is refused unless ``accept_truncation``."""
    report = await asyncio.to_thread(verify, directory)
    if not report.ok:
        raise BackupError("the backup does not verify: " + "; ".join(report.problems[:5]))
    manifest = Manifest.read(directory)
    if (manifest.database_kind == "sqlite") != db.is_sqlite:
        raise BackupError(
            f"a {manifest.database_kind} backup cannot be restored into this database"
        )
    evidence, problem = _check_against_checkpoint(manifest, checkpoint_dir)
    if problem is not None and not accept_truncation:
        raise BackupError(problem + "; restore anyway with --accept-truncation")
    home_restored = await asyncio.to_thread(restore_home, directory, manifest.home_files, home)
    await db.dispose()  # nothing of ours may hold the database while it is replaced
    if db.is_sqlite:
        await asyncio.to_thread(_restore_sqlite, directory / manifest.database_file, db)
    else:
        await _restore_postgres(directory / manifest.database_file, db)
    store = open_store()
    restored = 0
    for entry in manifest.objects:
        await store.put_file(entry.key, directory / OBJECTS / entry.key)
        restored += 1
    async with db.read_only() as session:
        references = await gather_references(session, list(sources))
    # What no restored row owns was written after T: it goes, whatever its age.
    findings = await examine(store, references, now=utcnow(), grace=timedelta(0))
    removed = await repair(store, findings, references) if findings.orphans else None
    if after_restore is not None:
        problem = problem or await after_restore(db, evidence)
    return {
        "objects_restored": restored,
        "objects_removed": len(removed.deleted) if removed else 0,
        "home_files_restored": home_restored,
        "audit_truncation_accepted": problem,
    }


def _check_against_checkpoint(
    manifest: Manifest, checkpoint_dir: Path | None
) -> tuple[Path | None, str | None]:
    """The checkpoint kept apart for this backup (if there is one) and, if the backup's
    chain does not reach it, why."""
    if not manifest.checkpoint:
        return None, None
    if checkpoint_dir is None:
        return None, (
            "the backup's audit checkpoint was kept apart, and no directory to find it in was "
            "given (--checkpoint-dir or ARMILLARY_BACKUP_CHECKPOINT_DIR): the restored chain "
            "cannot be checked for truncation"
        )
    path = checkpoint_copy(checkpoint_dir, manifest.id)
    try:
        data = json.loads(path.read_text())
        evidence = ChainHead(int(data["seq"]), str(data["hash"]))
    except FileNotFoundError:
        return None, f"the backup's audit checkpoint {path.name} is not in {checkpoint_dir}"
    except (OSError, ValueError, TypeError, KeyError):
        return path, f"the backup's audit checkpoint {path} is unreadable"
    head = manifest.audit_head
    if head is None or head.seq < evidence.seq:
        return path, (
            f"the backup's audit chain ends at record {head.seq if head else 0}, but the "
            f"checkpoint kept apart when it was made is at record {evidence.seq}: the "
            "database was truncated or rolled back before the backup"
        )
    if head.seq == evidence.seq and head.hash != evidence.hash:
        return path, (
            f"the backup's audit chain differs from the checkpoint kept apart at record "
            f"{head.seq}: records were rewritten before the backup"
        )
    return path, None


def _restore_sqlite(copy: Path, db: Database) -> None:
    target = _sqlite_path(db)
    target.parent.mkdir(parents=True, exist_ok=True)
    with (
        contextlib.closing(sqlite3.connect(copy)) as source,
        contextlib.closing(sqlite3.connect(target)) as destination,
    ):
        source.backup(destination)


async def _restore_postgres(dump: Path, db: Database) -> None:
    await _ensure_database(db)
    args, env = _libpq(db)
    # Drops what the dump holds and recreates it, in one transaction: a failed restore
    # leaves the database as it was.
    argv = [_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction"]
    await asyncio.to_thread(_run, [*argv, *args, str(dump)], env, "pg_restore")


async def _ensure_database(db: Database) -> None:
    import asyncpg

    url = make_url(db.url)
    name = str(url.database)
    maintenance = url.set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(
        maintenance.render_as_string(hide_password=False), ssl=db.ssl
    )
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            quoted = '"' + name.replace('"', '""') + '"'
            await connection.execute(f"CREATE DATABASE {quoted}")
    finally:
        await connection.close()


def describe(manifest: Manifest) -> dict[str, Any]:
    return {
        "id": manifest.id,
        "taken_at": manifest.taken_at.isoformat(),
        "database": manifest.database_kind,
        "database_bytes": manifest.database_size,
        "objects": len(manifest.objects),
        "object_bytes": manifest.object_bytes,
        "missing_objects": len(manifest.missing),
        "home_files": len(manifest.home_files),
        "audit_checkpoint": manifest.checkpoint,
    }
