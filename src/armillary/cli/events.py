"""``armillary events``: the RabbitMQ dead letters (ADR 0020). The broker's address comes from
``--url`` or ARMILLARY_RABBITMQ_URL; aio-pika is imported only when a command runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from armillary.cli.output import OutputFormat, OutputOption, fit_table, print_data, terminal
from armillary.cli.session import fail

app = typer.Typer(help="Events over RabbitMQ.", no_args_is_help=True)
dead_letters_app = typer.Typer(help="Events no consumer could handle.", no_args_is_help=True)
app.add_typer(dead_letters_app, name="dead-letters")
console = terminal(soft_wrap=True)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="ARMILLARY_RABBITMQ_URL",
        show_envvar=True,
        help="The broker (amqp://user:password@host:port/vhost)",
        show_default=False,
    ),
]


def _ca_file() -> Path | None:
    from armillary.kit.settings import Settings

    return Settings().ca_file("rabbitmq")


def _url(url: str | None) -> str:
    if not url:
        fail("Set ARMILLARY_RABBITMQ_URL or pass --url")
    return url


def _unreachable(exc: Exception) -> None:
    # The class only: a connection error may quote the URL, password included.
    fail(f"RabbitMQ is unreachable ({type(exc).__name__})")


@dead_letters_app.command("list")
def list_(url: UrlOption = None, output: OutputOption = OutputFormat.TABLE) -> None:
    """List the dead letters (they stay in the queue)."""
    from armillary.kit.dead_letters import list_dead_letters

    broker = _url(url)
    try:
        letters = asyncio.run(list_dead_letters(broker, ca_file=_ca_file()))
    except Exception as exc:
        _unreachable(exc)
        return
    if print_data(output, [letter.as_dict() for letter in letters]):
        return
    if not letters:
        console.print("No dead letters.")
        return
    table = Table("event id", "type", "consumer", "error", "attempts")
    for letter in letters:
        table.add_row(
            letter.event_id,
            escape(letter.event_type),
            escape(letter.consumer),
            escape(letter.error),
            str(letter.attempts),
        )
    fit_table(table, console, keep_whole=["event id"])
    console.print(table)


@dead_letters_app.command("replay")
def replay(
    event_id: Annotated[
        list[str] | None, typer.Option("--id", help="An event id to replay (repeatable)")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter")] = False,
    url: UrlOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Send dead letters back to the consumer that failed on them (fix the cause first)."""
    from armillary.kit.dead_letters import replay as replay_letters

    if bool(event_id) == all_:
        fail("Pass --id EVENT_ID (one or more) or --all")
    broker = _url(url)
    try:
        wanted = None if all_ else set(event_id or ())
        done = asyncio.run(replay_letters(broker, wanted, ca_file=_ca_file()))
    except Exception as exc:
        _unreachable(exc)
        return
    if print_data(output, [letter.as_dict() for letter in done]):
        return
    console.print(f"Replayed {len(done)} dead letter(s).")
    if event_id and len(done) < len(event_id):
        fail("Some ids are not in the dead-letter queue")
