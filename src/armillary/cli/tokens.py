"""``armillary tokens``: personal access tokens for notebooks and CI (ADR 0040)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from armillary.cli.output import OutputFormat, OutputOption, fit_table, print_data, terminal
from armillary.cli.session import api_client

app = typer.Typer(
    help="Personal access tokens (MLFLOW_TRACKING_TOKEN, notebooks, CI).", no_args_is_help=True
)

console = terminal(soft_wrap=True)
err = terminal(stderr=True)


def _when(value: str | None) -> str:
    return "-" if not value else value[:19].replace("T", " ")


@app.command("create")
def create(
    project: Annotated[str, typer.Option("--project", "-p", help="Project slug")],
    name: Annotated[str, typer.Option("--name", "-n", help="What the token is for")],
    days: Annotated[
        int, typer.Option("--days", min=1, max=90, help="Days until it expires (at most 90)")
    ] = 30,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Issue a token for one project. It is printed this once and never shown again."""
    with api_client() as client:
        issued = client.personal_tokens.create(project, name, expires_in_days=days)
    if print_data(output, issued):
        return
    # The token alone on stdout, so `export MLFLOW_TRACKING_TOKEN=$(armillary tokens create
    # ...)` works; what it is goes to stderr.
    err.print(
        f"Token {escape(issued['name'])} ({issued['id']}) for project {escape(project)}, "
        f"expires {_when(issued['expires_at'])} UTC. It is shown only now: keep it secret."
    )
    typer.echo(issued["token"])


@app.command("list")
def list_tokens(
    user: Annotated[
        str | None, typer.Option("--user", help="Another user's id (admins only)")
    ] = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Your personal access tokens (never the tokens themselves)."""
    with api_client() as client:
        tokens = client.personal_tokens.list(user_id=user)
    if print_data(output, tokens):
        return
    if not tokens:
        console.print("No personal access tokens.")
        return
    table = Table(title="Personal access tokens")
    table.add_column("Id", no_wrap=True)
    table.add_column("Name", style="bold")
    table.add_column("Project", no_wrap=True)
    table.add_column("Created")
    table.add_column("Expires")
    table.add_column("Revoked")
    for token in tokens:
        table.add_row(
            str(token["id"]),
            escape(str(token["name"])),
            str(token["project_id"]),
            _when(token["created_at"]),
            _when(token["expires_at"]),
            _when(token["revoked_at"]),
        )
    fit_table(table, console, optional=("Revoked", "Created"), keep_whole=("Id",))
    console.print(table)


@app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (from `tokens list`)")],
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Revoke a token: it stops working at once, everywhere."""
    with api_client() as client:
        client.personal_tokens.revoke(token_id)
    if print_data(output, {"id": token_id, "revoked": True}):
        return
    console.print(f"Revoked personal access token {escape(token_id)}.")
