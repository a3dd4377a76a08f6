"""``armillary runs``: an experiment's tracked runs, one run with a metric's history, and the
runs compared side by side (the parallel-coordinates export)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from armillary.cli.output import OutputFormat, OutputOption, fit_table, print_data, terminal
from armillary.cli.session import api_client

app = typer.Typer(help="Experiment runs: list, show, compare.", no_args_is_help=True)

console = terminal(soft_wrap=True)

ProjectOption = Annotated[str, typer.Option("--project", "-p", help="Project slug")]
ExperimentOption = Annotated[
    str, typer.Option("--experiment", "-e", help="Experiment name or id (0: the default one)")
]
FilterOption = Annotated[
    str | None,
    typer.Option("--filter", "-f", help="e.g. \"metrics.acc > 0.9 and params.model = 'rf'\""),
]
OrderOption = Annotated[
    list[str] | None,
    typer.Option("--order-by", help="e.g. 'metrics.acc DESC' (repeatable)"),
]
LimitOption = Annotated[int, typer.Option("--limit", "-n", min=1, max=5000, help="At most")]
# Metric columns a terminal table shows; `--output json` has them all.
_TABLE_METRICS = 5


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _when(epoch_ms: int | None) -> str:
    if epoch_ms is None:
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _job(run: dict[str, Any]) -> str:
    if not run.get("job_id"):
        return "-"
    return escape(f"{run['job_id'][:8]}/{run.get('task') or '-'}")


@app.command("list")
def list_runs(
    project: ProjectOption,
    experiment: ExperimentOption,
    filter_text: FilterOption = None,
    order_by: OrderOption = None,
    limit: LimitOption = 50,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """An experiment's runs, newest first unless --order-by says otherwise."""
    with api_client() as client:
        runs = client.runs.list(
            project, experiment, filter=filter_text, order_by=order_by or (), limit=limit
        )
    if print_data(output, runs):
        return
    if not runs:
        console.print(f"No runs in experiment {escape(experiment)}.")
        return
    metrics = sorted({key for run in runs for key in run["metrics"]})[:_TABLE_METRICS]
    table = Table(title=f"Runs of {escape(experiment)}")
    table.add_column("Run")
    table.add_column("Name", style="bold")
    table.add_column("Status")
    for key in metrics:
        table.add_column(key, justify="right")
    table.add_column("Job/task")
    table.add_column("Started")
    for run in runs:
        row = [escape(run["id"]), escape(run["name"]), escape(run["status"])]
        row += [_number(run["metrics"].get(key)) for key in metrics]
        row += [_job(run), _when(run["start_time"])]
        table.add_row(*row)
    fit_table(
        table, console, optional=("Started", "Job/task", *reversed(metrics)), keep_whole=("Run",)
    )
    console.print(table)


@app.command("show")
def show(
    project: ProjectOption,
    run_id: Annotated[str, typer.Argument(help="Run id (32 hex digits)")],
    metric: Annotated[
        str | None, typer.Option("--metric", "-m", help="Show this metric's history")
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """One run: status, times, its job and task, params, latest metrics and tags; with
    --metric, that metric's history step by step."""
    with api_client() as client:
        if metric is not None:
            points = client.runs.history(project, run_id, metric)
            if print_data(output, {"run_id": run_id, "key": metric, "points": points}):
                return
            table = Table(title=f"{escape(metric)} of run {escape(run_id)}")
            table.add_column("Step", justify="right")
            table.add_column("Value", justify="right")
            table.add_column("Logged")
            for point in points:
                table.add_row(
                    str(point["step"]), _number(point["value"]), _when(point["timestamp"])
                )
            fit_table(table, console, optional=("Logged",))
            console.print(table)
            return
        run = client.runs.get(project, run_id)
    if print_data(output, run):
        return
    console.print(
        f"[bold]{escape(run['name'])}[/bold] ({escape(run['id'])}): {escape(run['status'])}"
    )
    console.print(f"started {_when(run['start_time'])}, ended {_when(run['end_time'])}")
    if run.get("parent_run_id"):
        console.print(f"child of run {escape(run['parent_run_id'])}")
    if run.get("job_id"):
        console.print(f"job {escape(run['job_id'])}, task {escape(str(run.get('task')))}")
    for title, values in (
        ("Params", run["params"]),
        ("Metrics", run["metrics"]),
        ("Tags", run["tags"]),
    ):
        if not values:
            continue
        table = Table(title=title)
        table.add_column("Key")
        table.add_column("Value", justify="right" if title == "Metrics" else "left")
        for key, value in values.items():
            table.add_row(escape(key), _number(value))
        fit_table(table, console)
        console.print(table)


@app.command("compare")
def compare(
    project: ProjectOption,
    experiment: ExperimentOption,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="A param column (repeatable)")
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="A metric column (repeatable)")
    ] = None,
    filter_text: FilterOption = None,
    order_by: OrderOption = None,
    limit: LimitOption = 1000,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Runs side by side, a row each, a column per param and metric (all of them unless
    --param/--metric choose); `--output json` is the parallel-coordinates export."""
    with api_client() as client:
        table_data = client.runs.export(
            project,
            experiment,
            params=param or (),
            metrics=metric or (),
            filter=filter_text,
            order_by=order_by or (),
            limit=limit,
        )
    if print_data(output, table_data):
        return
    if not table_data["rows"]:
        console.print(f"No runs in experiment {escape(experiment)} match.")
        return
    table = Table(title=f"Runs of {escape(experiment)} compared")
    for column in table_data["columns"]:
        numeric = column.startswith("metrics.")
        table.add_column(escape(column), justify="right" if numeric else "left")
    for row in table_data["rows"]:
        table.add_row(*(_number(value) for value in row))
    fit_table(table, console, keep_whole=("run_id",))
    console.print(table)
    if table_data.get("truncated"):
        console.print(f"[dim]Only the first {limit} runs (--limit).[/dim]")
