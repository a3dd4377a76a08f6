"""``armillary backup``: back up, list, verify and restore the database and the objects it
references, at one consistent point (``kit.backup``). Runs against the configured database
and object store directly, like ``armillary doctor``; no server needed."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from armillary.cli.output import OutputFormat, OutputOption, print_data, terminal

if TYPE_CHECKING:
    from armillary.kit.settings import Settings
    from armillary.kit.storage import StorageSettings

app = typer.Typer(help="Backups of the database and the object store.", no_args_is_help=True)
console = terminal()
err = terminal(stderr=True)

DirArgument = Annotated[Path, typer.Argument(help="The backup's directory")]


def _checkpoint_file(settings: Settings) -> Path:
    return settings.home / "audit" / "checkpoint.json"


async def create_backup(
    settings: Settings, storage_settings: StorageSettings, output: Path
) -> dict[str, Any]:
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
            checkpoint_file=_checkpoint_file(settings),
        )
    finally:
        await db.dispose()
    return {"directory": str(output), **backup.describe(manifest)}


async def restore_backup(
    settings: Settings, storage_settings: StorageSettings, directory: Path
) -> dict[str, Any]:
    from armillary.app import storage_reference_sources
    from armillary.kit import backup
    from armillary.kit.db import Database
    from armillary.kit.storage import open_object_store

    secret = settings.resolved_secret_key()
    if storage_settings.backend == "s3":
        import asyncio

        from armillary.kit.storage.admin import init_bucket

        # The bucket may be gone with everything else: made again as `storage init` makes it.
        await asyncio.to_thread(init_bucket, storage_settings)
    db = Database.from_settings(settings)
    store = open_object_store(storage_settings, home=settings.home, signing_secret=secret)

    async def checkpoint(restored: Database) -> None:
        await _checkpoint_from(restored, settings)

    try:
        counts = await backup.restore(
            directory, db, store, storage_reference_sources(), after_restore=checkpoint
        )
    finally:
        await db.dispose()
    await _clear_cache(settings)
    return {"directory": str(directory), **counts}


async def restore_point(
    settings: Settings, storage_settings: StorageSettings, moment: datetime
) -> dict[str, Any]:
    """After pgBackRest restored the database to ``moment``: the objects as of the same
    moment, the audit checkpoint from the restored chain, and no cached answer."""
    import asyncio

    from armillary.kit.db import Database
    from armillary.kit.pitr import restore_objects_as_of

    counts = await asyncio.to_thread(restore_objects_as_of, storage_settings, moment)
    db = Database.from_settings(settings)
    try:
        await _checkpoint_from(db, settings)
    finally:
        await db.dispose()
    await _clear_cache(settings)
    return {"as_of": moment.isoformat(), **counts}


async def _checkpoint_from(db: Any, settings: Settings) -> None:
    from armillary.identity.audit.service import AuditLog, CheckpointFile

    audit = AuditLog(
        settings.resolved_secret_key(),
        CheckpointFile(_checkpoint_file(settings)),
        previous=[key.get_secret_value() for key in settings.previous_secret_keys],
    )
    async with db.read_only() as session:
        await audit.checkpoint_restored_head(session)


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


@app.command("create")
def create(
    to: Annotated[Path, typer.Option("--to", "-t", help="A new or empty directory")],
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Back up the database and every object its rows reference, as of one moment."""
    settings, storage = _settings()
    summary = _run(create_backup(settings, storage, to))
    if print_data(output_format, summary):
        return
    console.print(
        f"Backup of {summary['taken_at']} in {to}: {summary['database']} database "
        f"({summary['database_bytes']} bytes), {summary['objects']} objects "
        f"({summary['object_bytes']} bytes)."
    )
    if summary["missing_objects"]:
        err.print(
            f"[yellow]{summary['missing_objects']} referenced objects were already missing "
            "from the store[/yellow] (see `armillary doctor`)."
        )


@app.command("list")
def list_(
    root: Annotated[Path, typer.Argument(help="The directory holding backups")],
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """The backups under a directory, newest first."""
    from armillary.kit.backup import describe, list_backups

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
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """Replace the configured database and object store's contents with a backup's. Stop
    every Armillary process first."""
    if not yes:
        err.print("Restoring replaces the database and removes newer objects: add --yes.")
        raise typer.Exit(2)
    settings, storage = _settings()
    counts = _run(restore_backup(settings, storage, directory))
    if print_data(output_format, counts):
        return
    console.print(
        f"Restored {directory}: {counts['objects_restored']} objects put back, "
        f"{counts['objects_removed']} newer objects removed."
    )


@app.command("restore-point")
def restore_point_command(
    as_of: Annotated[
        datetime,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"],
            help="The moment pgBackRest restored the database to, with its zone",
        ),
    ],
    yes: Annotated[bool, typer.Option("--yes", help="Change the store's current objects")] = False,
    output_format: OutputOption = OutputFormat.TABLE,
) -> None:
    """After `pgbackrest restore --type=time --target=...`: bring the S3 bucket's objects back
    to the same moment (from their versions), set the audit checkpoint from the restored
    chain and clear the cache."""
    from armillary.kit.pitr import PointInTimeError

    if not yes:
        err.print("This changes the store's current objects: add --yes.")
        raise typer.Exit(2)
    settings, storage = _settings()
    try:
        counts = _run(restore_point(settings, storage, as_of))
    except PointInTimeError as exc:
        raise _fail(exc) from exc
    if print_data(output_format, counts):
        return
    console.print(
        f"Objects as of {counts['as_of']}: {counts['reverted']} brought back, "
        f"{counts['deleted']} newer ones deleted, {counts['kept']} unchanged."
    )
