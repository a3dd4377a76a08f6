"""``armillary datasets``: upload, download, list and inspect datasets from a terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from armillary.cli.output import OutputFormat, OutputOption, fit_table, print_data, terminal
from armillary.cli.session import api_client
from armillary.sdk import Progress as ProgressCallback
from armillary.sdk import Version, VersionDetail

app = typer.Typer(help="Datasets and their versions.", no_args_is_help=True)

console = terminal(soft_wrap=True)
# Progress bars go to stderr, so stdout carries only the result.
progress_console = terminal(stderr=True)


class Format(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


ProjectOption = Annotated[str, typer.Option("--project", "-p", help="Project slug")]
NameOption = Annotated[str, typer.Option("--name", "-n", help="Dataset name")]


@contextmanager
def transfer_bar(description: str) -> Iterator[ProgressCallback]:
    """A Rich progress bar (bytes, speed, time left) on a terminal, plain lines every tenth
    of the way anywhere else (a CI log); yields the callback that moves it."""
    if not progress_console.is_terminal:
        yield _TransferLines(Text.from_markup(description).plain)
        return
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=progress_console,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


class _TransferLines:
    """``Uploading x.csv: 4.2 MB of 10.5 MB (40%)``, a line each time another tenth is done."""

    STEP = 10

    def __init__(self, description: str) -> None:
        self._description = description
        self._printed = -1  # percent last printed

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        percent = min(100, done * 100 // total)
        if percent < 100 and percent < self._printed + self.STEP:
            return
        if percent == self._printed:
            return
        self._printed = percent
        progress_console.print(
            f"{self._description}: {decimal(done)} of {decimal(total)} ({percent}%)",
            highlight=False,
            markup=False,
        )


def _size(size: int | None) -> str:
    return "-" if size is None else decimal(size)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(value))


def _created(version: Version) -> str:
    # ISO timestamp to the second: "2025-01-31T12:00:00".
    return version["created_at"][:19].replace("T", " ")


@app.command("upload")
def upload(
    path: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="File to upload")
    ],
    project: ProjectOption,
    name: NameOption,
    format: Annotated[
        Format | None,
        typer.Option("--format", "-f", help="File format; guessed from the name when omitted"),
    ] = None,
    parent: Annotated[
        int | None, typer.Option(min=1, help="Number of the version this one derives from")
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Upload a CSV, Parquet or JSON Lines file as the next version of a dataset (created if
    missing, and deleted again if that first upload fails). Identical bytes return the
    existing version. Progress goes to stderr: a bar on a terminal, plain lines otherwise."""
    with api_client() as client, transfer_bar(f"Uploading {escape(path.name)}") as progress:
        result = client.datasets.upload(
            project,
            name,
            path,
            format=format.value if format else None,
            parent=parent,
            progress=progress,
        )
    version = result.version
    if print_data(output, {"created": result.created, "version": version}):
        return
    where = f"{escape(project)}/{escape(name)}"
    if result.created:
        console.print(f"Uploaded {escape(path.name)} as version {version['number']} of {where}")
    else:
        console.print(
            f"Identical to existing version {version['number']} of {where}; no new version"
        )
    console.print(f"sha256: {version['sha256']}")
    rows = version["row_count"]
    console.print(
        f"{_size(version['size_bytes'])}, {version['format']}, "
        f"{'?' if rows is None else rows} rows, profile {version['profile_status']}"
    )


@app.command("download")
def download(
    project: ProjectOption,
    name: NameOption,
    version: Annotated[int, typer.Option("--version", "-v", min=1, help="Version number")],
    to: Annotated[
        Path,
        typer.Option(
            "--to",
            "-t",
            help="File to write, or a directory to write <dataset>-v<n>.<format> into",
        ),
    ] = Path("."),
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Download a version's bytes to --to (the current directory by default); the file
    appears only once its SHA-256 checks out. --output is what is printed, as everywhere."""
    with api_client() as client, transfer_bar(f"Downloading {escape(name)} v{version}") as bar:
        written = client.datasets.download(project, name, version, to, progress=bar)
    size = written.stat().st_size
    saved = {
        "project": project,
        "dataset": name,
        "version": version,
        "path": str(written),
        "size_bytes": size,
    }
    if print_data(output, saved):
        return
    console.print(f"Saved {escape(str(written))} ({_size(size)}, sha256 verified)")


@app.command("list")
def list_datasets(project: ProjectOption, output: OutputOption = OutputFormat.TABLE) -> None:
    """The datasets of a project."""
    with api_client() as client:
        datasets = client.datasets.list(project)
    if print_data(output, datasets):
        return
    if not datasets:
        console.print(f"No datasets in project {escape(project)}.")
        return
    table = Table(title=f"Datasets of {escape(project)}")
    table.add_column("Name", style="bold")
    table.add_column("Latest", justify="right")
    table.add_column("Tags")
    table.add_column("Description")
    table.add_column("Updated")
    for dataset in datasets:
        table.add_row(
            escape(dataset["name"]),
            _cell(dataset["latest_version"]),
            escape(", ".join(dataset["tags"])),
            escape(dataset["description"]),
            dataset["updated_at"][:19].replace("T", " "),
        )
    fit_table(table, console, optional=("Updated", "Tags"), keep_whole=("Name",))
    console.print(table)


@app.command("show")
def show(
    project: ProjectOption,
    name: NameOption,
    version: Annotated[
        int | None,
        typer.Option("--version", "-v", min=1, help="Show this version's schema and profile"),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """A dataset's versions, or one version's schema and column profile."""
    with api_client() as client:
        if version is not None:
            detail = client.datasets.version(project, name, version)
            if not print_data(output, detail):
                _show_version(detail)
            return
        dataset = client.datasets.get(project, name)
        versions = client.datasets.versions(project, name)
    if print_data(output, {"dataset": dataset, "versions": versions}):
        return
    console.print(f"[bold]{escape(dataset['name'])}[/bold] in {escape(project)}")
    if dataset["description"]:
        console.print(escape(dataset["description"]))
    if dataset["tags"]:
        console.print(f"tags: {escape(', '.join(dataset['tags']))}")
    if not versions:
        console.print("No versions yet.")
        return
    table = Table(title="Versions")
    table.add_column("Version", justify="right")
    table.add_column("Format")
    table.add_column("Size", justify="right")
    table.add_column("Rows", justify="right")
    table.add_column("SHA-256")
    table.add_column("Profile")
    table.add_column("Parent", justify="right")
    table.add_column("Created")
    for item in versions:
        table.add_row(
            str(item["number"]),
            item["format"],
            _size(item["size_bytes"]),
            _cell(item["row_count"]),
            item["sha256"][:12],
            item["profile_status"],
            _cell(item["parent_version"]),
            _created(item),
        )
    fit_table(table, console, optional=("Parent", "Created", "Profile", "Format"))
    console.print(table)


def _show_version(detail: VersionDetail) -> None:
    console.print(f"[bold]{escape(detail['dataset'])}[/bold] version {detail['number']}")
    facts = {
        "format": detail["format"],
        "size": f"{_size(detail['size_bytes'])} ({detail['size_bytes']} bytes)",
        "rows": _cell(detail["row_count"]),
        "sha256": detail["sha256"],
        "file": _cell(detail["original_filename"]),
        "parent": _cell(detail["parent_version"]),
        "created": _created(detail),
        "profile": detail["profile_status"],
    }
    if detail["profile_error"]:
        facts["profile error"] = escape(detail["profile_error"])
    for key, value in facts.items():
        console.print(f"{key + ':':<10} {value}")
    profile = {column["name"]: column for column in detail["profile"] or []}
    table = Table(title="Columns")
    table.add_column("Column", style="bold")
    table.add_column("Type")
    if profile:
        for heading in ("Nulls", "Distinct", "Min", "Max", "Mean", "Std"):
            table.add_column(heading, justify="right")
    for column in detail["columns"]:
        cells = [escape(column["name"]), escape(column["dtype"])]
        stats = profile.get(column["name"])
        if profile:
            stats = stats or {}
            cells += [
                _cell(stats.get(key))
                for key in ("null_count", "distinct_estimate", "min", "max", "mean", "std")
            ]
        table.add_row(*cells)
    fit_table(table, console, optional=("Std", "Mean", "Distinct"), keep_whole=("Column",))
    console.print(table)
