"""``armillary backup``: back up, list, verify and restore the database, the objects it
references and the home directory's files, at one consistent point (``kit.backup``), with the
audit checkpoint kept apart as the evidence of truncation. Runs against the configured
database and object store directly, like ``armillary doctor``; no server needed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from armillary.cli.output import OUTPUT_ENV, OutputFormat, OutputOption, print_data, terminal

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.ext.asyncio import AsyncSession

    from armillary.kit.backup import ChainHead
    from armillary.kit.settings import Settings
    from armillary.kit.storage import StorageSettings

app: typer.Typer = typer.Typer(
    help="Backups of the database and the object store.", no_args_is_help=True
)
console: Console = terminal()
err: Console = terminal(stderr=True)

DirArgument = Annotated[Path, typer.Argument(help="The backup's directory")]


def _checkpoint_file(settings: Settings) -> Path:
    return settings.home / "audit" / "checkpoint.json"


def _home_excluded(settings: Settings, storage_settings: StorageSettings) -> list[Path]:
    """What of the home directory a backup leaves out: kept by other means (the database,
    the local store's objects, the audit checkpoint kept apart) or rebuilt on its own (the
    attempts' work directories, the serving model cache)."""
    from sqlalchemy.engine import make_url

    from armillary.engine import default_work_root
    from armillary.serving.settings import ServingSettings

    cache = ServingSettings().cache_dir
    excluded = [
        default_work_root(settings),
        Path(cache) if cache else settings.home / "serving",
        _checkpoint_file(settings).parent,
        *([settings.backup_dir] if settings.backup_dir else []),  # the other backups
    ]
    if storage_settings.backend == "local":
        excluded.append(storage_settings.resolved_local_root(settings.home))
    database = make_url(settings.database_dsn).database
    if settings.database_dsn.startswith("sqlite") and database:
        excluded += [Path(database + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
    return excluded


async def _read_chain_head(session: AsyncSession) -> ChainHead | None:
    from armillary.identity.audit.service import read_head
    from armillary.kit.backup import ChainHead

    head = await read_head(session)
    return ChainHead(head.seq, head.hash) if head is not None else None


async def create_backup(
    settings: Settings,
    storage_settings: StorageSettings,
    output: Path,
    *,
    checkpoint_output: Path | None = None,
) -> dict[str, Any]:
    """Back up into ``output``, the audit checkpoint into ``checkpoint_output`` (default:
    ARMILLARY_BACKUP_CHECKPOINT_DIR)."""
    from armillary.app import storage_reference_sources
    from armillary.kit import backup
    from armillary.kit.db import Database
    from armillary.kit.storage import open_object_store

    db = Database.from_settings(settings)
    store = open_object_store(
        storage_settings, home=settings.home, signing_secret=settings.resolved_secret_key()
    )
    try:
        manifest = await backup.create(
            db,
            store,
            storage_reference_sources(),
            output,
            home=settings.home,
            home_excluded=_home_excluded(settings, storage_settings),
            checkpoint_file=_checkpoint_file(settings),
            checkpoint_dir=checkpoint_output or settings.backup_checkpoint_dir,
            read_chain_head=_read_chain_head,
        )
    finally:
        await db.dispose()
    return {"directory": str(output), **backup.describe(manifest)}


async def restore_backup(
    settings: Settings,
    storage_settings: StorageSettings,
    directory: Path,
    *,
    checkpoint_dir: Path | None = None,
    accept_truncation: bool = False,
) -> dict[str, Any]:
    """Restore ``directory``, checking its audit chain against the checkpoint kept apart in
    ``checkpoint_dir`` (default: ARMILLARY_BACKUP_CHECKPOINT_DIR)."""
    from armillary.app import storage_reference_sources
    from armillary.kit import backup
    from armillary.kit.db import Database
    from armillary.kit.storage import ObjectStore, open_object_store

    if storage_settings.backend == "s3":
        import asyncio

        from armillary.kit.storage.admin import init_bucket

        # The bucket may be gone with everything else: made again as `storage init` makes it.
        await asyncio.to_thread(init_bucket, storage_settings)
    db = Database.from_settings(settings)

    def open_store() -> ObjectStore:
        # After the home files are back: the secret is the backup's, not a new one.
        secret = settings.resolved_secret_key()
        return open_object_store(storage_settings, home=settings.home, signing_secret=secret)

    async def checkpoint(restored: Database, evidence: Path | None) -> str | None:
        problem = None
        if evidence is not None:
            problem = await _check_restored_chain(restored, settings, evidence)
            if problem is not None and not accept_truncation:
                await _keep_evidence(settings, evidence)
                raise backup.BackupError(
                    f"{problem}: the database is restored, and the audit checkpoint keeps the "
                    "evidence; restore again with --accept-truncation to accept the chain"
                )
        await _checkpoint_from(restored, settings)
        return problem

    try:
        counts = await backup.restore(
            directory,
            db,
            open_store,
            storage_reference_sources(),
            home=settings.home,
            checkpoint_dir=checkpoint_dir or settings.backup_checkpoint_dir,
            accept_truncation=accept_truncation,
            after_restore=checkpoint,
        )
    finally:
        await db.dispose()
    await _clear_cache(settings)
    return {"directory": str(directory), **counts}


async def restore_point(
    settings: Settings,
    storage_settings: StorageSettings,
    moment: datetime,
    backup_bucket: StorageSettings | None = None,
) -> dict[str, Any]:
    """After pgBackRest restored the database to ``moment``: the objects as of the same
    moment (from ``backup_bucket``'s copy where the platform's bucket lost them), the audit
    checkpoint from the restored chain, and no cached answer."""
    import asyncio

    from armillary.kit.db import Database
    from armillary.kit.pitr import restore_objects_as_of
    from armillary.kit.storage.admin import init_bucket

    if storage_settings.backend == "s3":
        # The bucket may be gone with everything else: made again as `storage init` makes it.
        await asyncio.to_thread(init_bucket, storage_settings)
    counts = await asyncio.to_thread(restore_objects_as_of, storage_settings, moment, backup_bucket)
    db = Database.from_settings(settings)
    try:
        await _checkpoint_from(db, settings)
    finally:
        await db.dispose()
    await _clear_cache(settings)
    return {"as_of": moment.isoformat(), **counts}


def _audit_log(settings: Settings, checkpoint: Path) -> Any:
    from armillary.identity.audit.service import AuditLog, CheckpointFile

    return AuditLog(
        settings.resolved_secret_key(),
        CheckpointFile(checkpoint),
        previous=[key.get_secret_value() for key in settings.previous_secret_keys],
    )


async def _checkpoint_from(db: Any, settings: Settings) -> None:
    async with db.read_only() as session:
        await _audit_log(settings, _checkpoint_file(settings)).checkpoint_restored_head(session)


async def _check_restored_chain(db: Any, settings: Settings, evidence: Path) -> str | None:
    """Why the restored chain does not verify against the checkpoint kept apart, if it does
    not (the manifest's head, checked before the restore, could have been rewritten with
    the dump)."""
    # In a transaction: verification streams the records through a server-side cursor.
    async with db.sessionmaker() as session:
        report = await _audit_log(settings, evidence).verify(session)
    if report.ok:
        return None
    return "the restored audit chain does not verify against the checkpoint kept apart (" + (
        "; ".join(report.problems[:3]) + ")"
    )


async def _keep_evidence(settings: Settings, evidence: Path) -> None:
    # The outside checkpoint becomes the one kept apart: `armillary audit verify` then keeps
    # reporting what the restored chain lacks.
    import asyncio

    from armillary.identity.audit.service import CheckpointFile

    kept = CheckpointFile(evidence).read()
    if kept is not None:
        live = CheckpointFile(_checkpoint_file(settings))
        await asyncio.to_thread(live.write, kept, restore=True)


async def _clear_cache(settings: Settings) -> None:
    from armillary.kit.cache import create_cache
    from armillary.kit.secretbox import derive_key

    # Cached answers describe the state after the restored moment: none may outlive it.
    key = derive_key(settings.resolved_secret_key(), "cache")
    cache = create_cache(settings.redis_url, key, ca_file=settings.ca_file("redis"))
    try:
        await cache.delete_pattern("*")
    finally:
        await cache.close()


def _settings() -> tuple[Settings, StorageSettings]:
    from armillary.kit.settings import Settings
    from armillary.kit.storage import StorageSettings

    return Settings(), StorageSettings()


def _fail(exc: Exception) -> typer.Exit:
    err.print(f"[red]Backup failed:[/red] {exc}")
    return typer.Exit(1)


def _run(action: Any) -> Any:
    import asyncio

    from armillary.kit.backup import BackupError

    try:
        return asyncio.run(action)
    except BackupError as exc:
        raise _fail(exc) from exc


# `backup create --output DIR` names the backup's directory (issue 17's command line), so
# there the output format is `-o` or `--format` (ARMILLARY_OUTPUT as everywhere).
FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        "-o",
        case_sensitive=False,
        envvar=OUTPUT_ENV,
        help="table (for people), or json or yaml (for scripts)",
    ),
]

CheckpointOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint-dir",
        help="Where the audit checkpoint is kept apart from the backups "
        "[ARMILLARY_BACKUP_CHECKPOINT_DIR]",
    ),
]


@app.command("create")
def create(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "--to",
            "-t",
            help="A new or empty directory [a new one under ARMILLARY_BACKUP_DIR]",
        ),
    ] = None,
    checkpoint_output: Annotated[
        Path | None,
        typer.Option(
            "--checkpoint-output",
            help="Where the audit checkpoint is copied, apart from the backup "
            "[ARMILLARY_BACKUP_CHECKPOINT_DIR]",
        ),
    ] = None,
    output_format: FormatOption = OutputFormat.TABLE,
) -> None:
    """Back up the database, every object its rows reference and the home directory's
    files (platform secret, service keys), as of one moment; the audit checkpoint goes
    apart."""
    settings, storage = _settings()
    if output is None:
        if settings.backup_dir is None:
            err.print("Give --output DIR, or set ARMILLARY_BACKUP_DIR.")
            raise typer.Exit(2)
        from armillary.kit.db import utcnow

        output = settings.backup_dir / utcnow().strftime("%Y%m%dT%H%M%SZ")
    summary = _run(create_backup(settings, storage, output, checkpoint_output=checkpoint_output))
    if print_data(output_format, summary):
        return
    console.print(
        f"Backup of {summary['taken_at']} in {output}: {summary['database']} database "
        f"({summary['database_bytes']} bytes), {summary['objects']} objects "
        f"({summary['object_bytes']} bytes), {summary['home_files']} home files."
    )
    if summary["missing_objects"]:
        err.print(
            f"[yellow]{summary['missing_objects']} referenced objects were already missing "
            "from the store[/yellow] (see `armillary doctor`)."
        )


@app.command("list")
def list_(
    root: Annotated[
        Path | None,
        typer.Argument(help="The directory holding backups [ARMILLARY_BACKUP_DIR]"),
    ] = None,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """The backups under a directory, newest first."""
    from armillary.kit.backup import describe, list_backups

    if root is None:
        root = _settings()[0].backup_dir
        if root is None:
            err.print("Give the directory holding backups, or set ARMILLARY_BACKUP_DIR.")
            raise typer.Exit(2)
    rows = [{"directory": str(path), **describe(m)} for path, m in list_backups(root)]
    if print_data(output_format, rows):
        return
    if not rows:
        console.print(f"No backups under {root}.")
    for row in rows:
        console.print(
            f"{row['taken_at']}  {row['directory']}  {row['database']}  "
            f"{row['objects']} objects, {row['database_bytes'] + row['object_bytes']} bytes"
        )


@app.command("verify")
def verify(directory: DirArgument, output_format: OutputOption = OutputFormat.TABLE) -> None:
    """Check every file of a backup against its SHA-256, and that its database reads."""
    from dataclasses import asdict

    from armillary.kit.backup import BackupError
    from armillary.kit.backup import verify as verify_backup

    try:
        report = verify_backup(directory)
    except BackupError as exc:
        raise _fail(exc) from exc
    if not print_data(output_format, asdict(report)):
        if report.ok:
            console.print(f"Backup of {report.taken_at} verified ({report.objects} objects).")
        for problem in report.problems:
            err.print(f"  - {problem}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("restore")
def restore(
    directory: DirArgument,
    yes: Annotated[
        bool, typer.Option("--yes", help="Replace the configured database and store's contents")
    ] = False,
    checkpoint_dir: CheckpointOption = None,
    accept_truncation: Annotated[
        bool,
        typer.Option(
            "--accept-truncation",
            help="Restore even when the backup's audit chain ends before the checkpoint kept "
            "apart (or that checkpoint is missing), and set the checkpoint from it",
        ),
    ] = False,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Replace the configured database, object store and home files with a backup's, after
    checking its audit chain against the checkpoint kept apart. Stop every Armillary process
    first."""
    if not yes:
        err.print("Restoring replaces the database and removes newer objects: add --yes.")
        raise typer.Exit(2)
    settings, storage = _settings()
    counts = _run(
        restore_backup(
            settings,
            storage,
            directory,
            checkpoint_dir=checkpoint_dir,
            accept_truncation=accept_truncation,
        )
    )
    if counts["audit_truncation_accepted"]:
        err.print(
            "[red]The audit chain was accepted short of its checkpoint:[/red] "
            f"{counts['audit_truncation_accepted']}."
        )
    if print_data(output_format, counts):
        return
    console.print(
        f"Restored {directory}: {counts['objects_restored']} objects put back, "
        f"{counts['objects_removed']} newer objects removed, "
        f"{counts['home_files_restored']} home files."
    )


# The point-in-time commands (restore-point, objects-sync, pgbackrest-config) register on
# `app` from a module of their own; imported last, since they use this module's helpers.
from armillary.cli.backup_pitr import sync_objects  # noqa: E402,F401
