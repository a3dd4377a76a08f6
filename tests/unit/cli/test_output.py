"""``--output`` renders data as parseable JSON or YAML; tables fit 80 columns with every id
and metric whole (no ellipsis)."""

from __future__ import annotations

import io
import json
import uuid

import pytest
import yaml
from rich.console import Console
from rich.table import Table

from armillary.cli.output import OutputFormat, fit_table, print_data

DATA = {
    "id": str(uuid.uuid4()),
    "metrics": {"accuracy": 0.9412345, "f1": None},
    "tags": ["a", "ü"],
    "when": uuid.UUID(int=7),  # not a JSON type: written as its string
}


@pytest.mark.parametrize("output", [OutputFormat.JSON, OutputFormat.YAML])
def test_structured_output_parses(output: OutputFormat, capsys: pytest.CaptureFixture[str]) -> None:
    assert print_data(output, DATA) is True
    text = capsys.readouterr().out
    parsed = json.loads(text) if output is OutputFormat.JSON else yaml.safe_load(text)
    assert parsed == {**DATA, "when": str(uuid.UUID(int=7))}


def test_table_output_is_left_to_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_data(OutputFormat.TABLE, DATA) is False
    assert capsys.readouterr().out == ""


def _console(width: int) -> tuple[Console, io.StringIO]:
    screen = io.StringIO()
    return Console(file=screen, width=width, force_terminal=False), screen


def test_a_jobs_table_keeps_whole_ids_at_80_columns() -> None:
    console, screen = _console(80)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    table = Table(title="Jobs")
    for header in ("Job", "Workflow", "Version", "Status", "Trigger", "Created", "Duration"):
        table.add_column(header)
    for job in ids:
        table.add_row(
            job, "nightly-training", "12", "succeeded", "schedule", "2026-01-01 12:00:00", "1m 02s"
        )

    dropped = fit_table(
        table, console, optional=("Trigger", "Created", "Version"), keep_whole=("Job",)
    )
    console.print(table)

    drawn = screen.getvalue()
    assert "…" not in drawn
    assert max(len(line) for line in drawn.splitlines()) <= 80
    for job in ids:
        assert job in drawn  # on one line, whole
    assert dropped == ["Trigger", "Created", "Version"]


def test_wide_terminals_keep_every_column() -> None:
    console, screen = _console(200)
    table = Table()
    for header in ("Job", "Trigger"):
        table.add_column(header)
    table.add_row(str(uuid.uuid4()), "api")
    assert fit_table(table, console, optional=("Trigger",)) == []
    console.print(table)
    assert "Trigger" in screen.getvalue()


def test_metrics_are_whole_or_left_out_never_cut() -> None:
    console, screen = _console(80)
    metrics = [f"metric_{i}" for i in range(9)]
    values = [f"0.{i}12345" for i in range(9)]
    table = Table()
    table.add_column("Version")
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_row("1", *values)

    dropped = fit_table(table, console, optional=tuple(reversed(metrics[1:])))
    console.print(table)

    drawn = screen.getvalue()
    assert "…" not in drawn
    assert max(len(line) for line in drawn.splitlines()) <= 80
    assert dropped  # nine metrics do not fit 80 columns
    shown = [v for name, v in zip(metrics, values, strict=True) if name not in dropped]
    assert shown
    for value in shown:
        assert value in drawn


def test_cells_that_cannot_fit_wrap_without_an_ellipsis() -> None:
    console, screen = _console(40)
    table = Table()
    table.add_column("Id")
    table.add_column("Description")
    table.add_row(str(uuid.uuid4()), "a long description " * 5)

    fit_table(table, console)
    console.print(table)

    drawn = screen.getvalue()
    assert "…" not in drawn
    assert max(len(line) for line in drawn.splitlines()) <= 40


@pytest.mark.parametrize("width", [40, 60])
def test_too_narrow_for_whole_ids_they_fold_but_stay_complete(width: int) -> None:
    console, screen = _console(width)
    job = str(uuid.uuid4())
    table = Table()
    for header in ("Job", "Workflow", "Status"):
        table.add_column(header)
    table.add_row(job, "nightly-training", "succeeded")

    fit_table(table, console, keep_whole=("Job",))
    console.print(table)

    drawn = screen.getvalue()
    assert "…" not in drawn
    body = [line.split("│") for line in drawn.splitlines() if line.startswith("│")]
    assert "".join(cells[1].strip() for cells in body) == job
    assert "".join(cells[3].strip() for cells in body) == "succeeded"
