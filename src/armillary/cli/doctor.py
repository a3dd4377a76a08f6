"""``armillary doctor``: compare the object store with the rows that point into it.

Runs against the configured database and object store directly (``ARMILLARY_*`` and
``ARMILLARY_STORAGE_*`` settings), like the other admin commands: no server needed. Reports
rows whose object is missing and objects no row owns; ``--repair`` deletes those orphans.
The database and storage code is imported when the command runs, not at start-up.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from armillary.cli.output import OutputFormat, OutputOption, fit_table, print_data, terminal

if TYPE_CHECKING:
    from armillary.kit.settings import Settings
    from armillary.kit.storage import StorageSettings

console = terminal()
err = terminal(stderr=True)


async def check(
    settings: Settings, storage_settings: StorageSettings, *, repair: bool, grace: timedelta
) -> dict[str, Any]:
    """Examine (and with ``repair`` clean) the store; the report as plain data."""
    from armillary.app import storage_reference_sources
    from armillary.kit.db import Database, utcnow
    from armillary.kit.storage import open_object_store
    from armillary.kit.storage.doctor import examine, gather_references
    from armillary.kit.storage.doctor import repair as repair_orphans

    db = Database.from_settings(settings)
    store = open_object_store(
        storage_settings, home=settings.home, signing_secret=settings.resolved_secret_key()
    )
    sources = storage_reference_sources()
    try:
        async with db.read_only() as session:
            references = await gather_references(session, sources)
        findings = await examine(store, references, now=utcnow(), grace=grace)
        repaired = None
        if repair and findings.orphans:
            # Read again after the listing: a row that came to own an orphan keeps it.
            async with db.read_only() as session:
                fresh = await gather_references(session, sources)
            repaired = await repair_orphans(store, findings, fresh)
    finally:
        await db.dispose()
    return {
        "healthy": findings.healthy if repaired is None else not findings.missing,
        "objects": findings.objects,
        "references": findings.references,
        "missing": [{"key": m.key, "row": m.owner} for m in findings.missing],
        "orphans": [
            {"key": o.key, "size_bytes": o.size, "last_modified": o.last_modified.isoformat()}
            for o in findings.orphans
        ],
        "unowned_within_grace": findings.recent,
        "grace_seconds": int(grace.total_seconds()),
        "repair": None
        if repaired is None
        else {"deleted": repaired.deleted, "kept": repaired.kept},
    }


def doctor(
    repair: Annotated[
        bool, typer.Option("--repair", help="Delete the orphans found (never an owned object)")
    ] = False,
    grace: Annotated[
        int,
        typer.Option(
            min=0,
            max=10 * 365 * 24 * 3600,
            help="Seconds an unowned object is left alone: an upload in flight has not "
            "committed its row yet",
        ),
    ] = 3600,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Find rows whose object is missing from the store and objects no row owns (older than
    the grace period); --repair deletes those orphans. Exits 1 while anything is wrong."""
    import asyncio

    from armillary.kit.settings import Settings
    from armillary.kit.storage import StorageSettings

    report = asyncio.run(
        check(Settings(), StorageSettings(), repair=repair, grace=timedelta(seconds=grace))
    )
    if not print_data(output, report):
        _print(report)
    if not report["healthy"]:
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    console.print(
        f"{report['objects']} objects, {report['references']} recorded keys; "
        f"{len(report['missing'])} missing, {len(report['orphans'])} orphaned, "
        f"{report['unowned_within_grace']} unowned but younger than "
        f"{report['grace_seconds']} s (left alone)."
    )
    if report["missing"]:
        table = Table(title="Rows whose object is missing")
        table.add_column("Row")
        table.add_column("Key")
        for item in report["missing"]:
            table.add_row(escape(item["row"]), escape(item["key"]))
        fit_table(table, console, keep_whole=["Key"])
        console.print(table)
    if report["orphans"]:
        table = Table(title="Objects no row owns")
        table.add_column("Key")
        table.add_column("Bytes", justify="right")
        table.add_column("Last modified")
        for item in report["orphans"]:
            table.add_row(escape(item["key"]), str(item["size_bytes"]), item["last_modified"])
        fit_table(table, console, optional=["Last modified", "Bytes"], keep_whole=["Key"])
        console.print(table)
    repaired = report["repair"]
    if repaired is not None:
        console.print(f"[green]Deleted {len(repaired['deleted'])} orphan(s).[/green]")
        if repaired["kept"]:
            err.print(f"Kept {len(repaired['kept'])} (now owned by a row, or not a platform key).")
    elif report["orphans"]:
        console.print("Run with --repair to delete the orphans.")
    if report["healthy"]:
        console.print("[green]Storage and rows agree.[/green]")
