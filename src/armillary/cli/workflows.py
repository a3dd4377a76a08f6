"""``armillary workflow``: validate a workflow spec offline, or apply it to a project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from armillary.cli.output import OutputFormat, OutputOption, print_data, terminal
from armillary.cli.session import api_client, fail
from armillary.sdk import ArmillaryError

app = typer.Typer(help="Workflow specs: validate and apply.", no_args_is_help=True)

console = terminal(soft_wrap=True)
err = terminal(stderr=True, soft_wrap=True)

FileArgument = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="YAML or JSON spec")
]


def _read(path: Path) -> Any:
    from armillary.workflows.specs.documents import (
        DocumentError,
        format_for_filename,
        parse_document,
    )

    try:
        return parse_document(path.read_bytes(), format_for_filename(path.name))
    except DocumentError as exc:
        fail(f"{path}: {exc}")


def _print_errors(errors: list[dict[str, Any]]) -> None:
    for error in errors:
        where = error.get("path") or "<document>"
        err.print(
            f"  [red]{escape(where)}[/red]: {escape(str(error.get('message', '')))} "
            f"[dim]({escape(str(error.get('kind', '')))})[/dim]"
        )


@app.command()
def validate(file: FileArgument, output: OutputOption = OutputFormat.TABLE) -> None:
    """Check a spec without a server: every error with its path. Checks that need the server
    (a code bundle or dataset exists) are listed as skipped. Exit status 1 on errors."""
    from armillary.workflows.specs.validation import validate_spec

    result = validate_spec(_read(file))
    report = {
        "file": str(file),
        "valid": not result.errors,
        "tasks": len(result.spec.tasks) if result.spec is not None else None,
        "errors": [e.model_dump(mode="json") for e in result.errors],
        "checked_on_apply": [{"check": s.check, "path": s.path} for s in result.skipped],
    }
    if print_data(output, report):
        if result.errors:
            raise typer.Exit(1)
        return
    if result.errors:
        err.print(f"[red]{escape(str(file))}: {len(result.errors)} error(s)[/red]")
        _print_errors([e.model_dump(mode="json") for e in result.errors])
        raise typer.Exit(1)
    spec = result.spec
    assert spec is not None  # noqa: S101 - set whenever there are no errors
    console.print(f"[green]{escape(str(file))} is valid[/green]: {len(spec.tasks)} task(s)")
    # What only the server can check, after the verdict: it is not an error.
    for skipped in result.skipped:
        console.print(
            f"  [dim]checked on apply: {escape(skipped.check)} ({escape(skipped.path)})[/dim]"
        )


@app.command()
def apply(
    file: FileArgument,
    project: Annotated[str, typer.Option("--project", "-p", help="Project slug")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Submit a spec to a project: a new version when it changed, none when it did not."""
    document = _read(file)
    with api_client() as client:
        try:
            response = client.request(
                "POST", f"/api/v1/projects/{project}/workflows", json=document
            )
        except ArmillaryError as exc:
            errors = exc.body.get("errors") if isinstance(exc.body, dict) else None
            if exc.status == 422 and isinstance(errors, list):
                err.print(f"[red]{escape(str(file))}: {len(errors)} error(s)[/red]")
                _print_errors(errors)
                raise typer.Exit(1) from exc
            raise
    applied = response.json()
    if print_data(output, applied):
        return
    name = applied["workflow"]["name"]
    number = applied["version"]["number"]
    if applied["created"]:
        console.print(f"Applied {escape(name)}: version {number}")
    else:
        console.print(f"{escape(name)} unchanged: version {number}")
