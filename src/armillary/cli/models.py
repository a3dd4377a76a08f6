"""``armillary models``: registered models, their versions and metrics, side by side."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from armillary.cli.output import OutputFormat, OutputOption, fit_table, print_data, terminal
from armillary.cli.session import api_client

app = typer.Typer(help="Registered models, versions, metrics and aliases.", no_args_is_help=True)

console = terminal(soft_wrap=True)

ProjectOption = Annotated[str, typer.Option("--project", "-p", help="Project slug")]
ModelOption = Annotated[str, typer.Option("--model", "-m", help="Registered model name")]
# Shown first, in this order, when a version has them; other metrics follow by name.
_TABLE_METRICS = 6
_METRIC_ORDER = (
    "accuracy",
    "f1",
    "precision",
    "recall",
    "roc_auc",
    "log_loss",
    "rmse",
    "mae",
    "r2",
)


def _when(value: str | None) -> str:
    return "-" if not value else value[:19].replace("T", " ")


def _number(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))


def _metric_names(versions: list[dict[str, Any]]) -> list[str]:
    present = {name for v in versions for name in (v.get("metrics") or {})}
    ordered = [name for name in _METRIC_ORDER if name in present]
    return ordered + sorted(present - set(ordered))


def _aliases_by_version(model: dict[str, Any]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for alias, version in sorted((model.get("aliases") or {}).items()):
        found.setdefault(int(version), []).append(str(alias))
    return found


@app.command("list")
def list_models(project: ProjectOption, output: OutputOption = OutputFormat.TABLE) -> None:
    """The registered models of a project, with their latest version and aliases."""
    with api_client() as client:
        models = client.models.list(project)
    if print_data(output, models):
        return
    if not models:
        console.print(f"No registered models in project {escape(project)}.")
        return
    table = Table(title=f"Models of {escape(project)}")
    table.add_column("Name", style="bold")
    table.add_column("Latest", justify="right")
    table.add_column("Aliases")
    table.add_column("Description")
    table.add_column("Updated")
    for model in models:
        pointing = sorted((model.get("aliases") or {}).items())
        aliases = ", ".join(f"{alias}→v{version}" for alias, version in pointing)
        table.add_row(
            escape(model["name"]),
            _number(model.get("latest_version")),
            escape(aliases) or "-",
            escape(model.get("description") or ""),
            _when(model.get("updated_at") or model.get("created_at")),
        )
    fit_table(table, console, optional=("Updated", "Description"), keep_whole=("Name",))
    console.print(table)


@app.command("show")
def show(
    project: ProjectOption,
    model: ModelOption,
    version: Annotated[
        int | None, typer.Option("--version", "-v", min=1, help="Show one version in full")
    ] = None,
    order_by: Annotated[
        str | None,
        typer.Option("--order-by", help="Order versions, e.g. metrics.f1 or -metrics.rmse"),
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """A model's versions with their metrics, or one version in full."""
    with api_client() as client:
        if version is not None:
            detail = client.models.version(project, model, version)
            if not print_data(output, detail):
                _show_version(detail)
            return
        found = client.models.get(project, model)
        versions = client.models.versions(project, model, order_by=order_by)
    if print_data(output, {"model": found, "versions": versions}):
        return
    console.print(f"[bold]{escape(found['name'])}[/bold] in {escape(project)}")
    if found.get("description"):
        console.print(escape(found["description"]))
    if not versions:
        console.print("No versions yet.")
        return
    aliases = _aliases_by_version(found)
    # The training metrics fit a terminal; `--version N` shows every metric of one version.
    metrics = [m for m in _metric_names(versions) if not m.startswith("eval_")][:_TABLE_METRICS]
    table = Table(title="Versions")
    table.add_column("Version", justify="right")
    table.add_column("Aliases")
    table.add_column("Estimator")
    table.add_column("ONNX")
    for name in metrics:
        table.add_column(name, justify="right")
    table.add_column("Created")
    for item in versions:
        number = int(item["version"])
        row = [str(number), escape(", ".join(aliases.get(number, []))) or "-"]
        row.append(escape(item.get("estimator") or "-"))
        row.append(escape(onnx_status(item)))
        row += [_number((item.get("metrics") or {}).get(name)) for name in metrics]
        row.append(_when(item.get("created_at")))
        table.add_row(*row)
    # At 80 columns: the creation time, estimator and aliases give way, then the last metrics.
    hidden = fit_table(
        table,
        console,
        optional=("Created", "Estimator", "ONNX", "Aliases", *reversed(metrics[1:])),
    )
    console.print(table)
    left_out = [name for name in metrics if name in hidden]
    if left_out:
        console.print(
            f"[dim]Not shown at this width: {escape(', '.join(left_out))} "
            "(`--version N` or `--output json` shows every metric)[/dim]"
        )


def onnx_status(item: dict[str, Any]) -> str:
    """``pending``, ``ready`` or ``failed``; ``-`` when no export was asked for."""
    onnx = item.get("onnx")
    return str(onnx.get("status") or "-") if isinstance(onnx, dict) else "-"


def _show_version(item: dict[str, Any]) -> None:
    console.print(
        f"[bold]{escape(item['model'])}[/bold] version {item['version']} "
        f"({escape(item.get('estimator') or '-')}, {escape(item.get('format') or '-')})"
    )
    onnx = item.get("onnx") or {}
    if onnx:
        reason = f" ({onnx['reason']})" if onnx.get("reason") else ""
        console.print(escape(f"onnx: {onnx_status(item)}{reason}"))
    if item.get("description"):
        console.print(escape(item["description"]))
    metrics = Table(title="Metrics")
    metrics.add_column("Metric")
    metrics.add_column("Value", justify="right")
    for name in _metric_names([item]):
        metrics.add_row(escape(name), _number(item["metrics"][name]))
    fit_table(metrics, console)
    console.print(metrics)
    if item.get("params"):
        console.print("[bold]Parameters[/bold]")
        console.print_json(json.dumps(item["params"], sort_keys=True))
    lineage = item.get("lineage") or {}
    datasets = lineage.get("datasets") or item.get("datasets") or []
    if datasets:
        table = Table(title="Trained on")
        table.add_column("Dataset")
        table.add_column("Version", justify="right")
        table.add_column("SHA-256")
        for used in datasets:
            table.add_row(
                escape(str(used.get("dataset"))),
                _number(used.get("version")),
                escape(str(used.get("sha256", ""))[:12]),
            )
        fit_table(table, console)
        console.print(table)
    if lineage.get("job_id"):
        console.print(
            f"job {escape(str(lineage['job_id']))}, task {escape(str(lineage.get('task')))}"
        )


@app.command("compare")
def compare(
    project: ProjectOption,
    model: ModelOption,
    versions: Annotated[list[int], typer.Argument(help="Version numbers to compare")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Versions side by side: metrics, the parameters that differ, training data."""
    if len(versions) < 2:
        raise typer.BadParameter("name at least two versions")
    with api_client() as client:
        found = client.models.compare(project, model, versions)
    if print_data(output, found):
        return
    numbers = [int(v) for v in found["versions"]]
    table = Table(title=f"{escape(model)}: versions {', '.join(map(str, numbers))}")
    table.add_column("")
    for number in numbers:
        table.add_column(f"v{number}", justify="right")
    table.add_row("estimator", *[escape(e or "-") for e in found["estimators"]])
    metrics = found["metrics"]
    ordered = [m for m in _METRIC_ORDER if m in metrics] + sorted(set(metrics) - set(_METRIC_ORDER))
    for name in ordered:
        table.add_row(escape(name), *[_number(v) for v in metrics[name]])
    for key, values in sorted(found["params"].items()):
        table.add_row(f"[dim]{escape(key)}[/dim]", *[_number(v) for v in values])
    datasets = [
        ", ".join(f"{d['dataset']} v{d['version']}" for d in used) or "-"
        for used in found["datasets"]
    ]
    table.add_row("trained on", *[escape(d) for d in datasets])
    fit_table(table, console)
    console.print(table)
