"""``armillary jobs``: run a workflow and watch it, list history, inspect, read logs, cancel.

Commands that take a job id also take a unique prefix of one (``armillary jobs show 6aa0``),
as git takes abbreviated commit hashes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from armillary.cli.job_views import (
    attempt,
    duration,
    excerpt,
    follow,
    status,
    summary,
    task_table,
    when,
)
from armillary.cli.log_lines import LogPrinter
from armillary.cli.output import (
    OUTPUT_ENV,
    OutputFormat,
    OutputOption,
    fit_table,
    print_data,
    terminal,
)
from armillary.cli.prefixes import PrefixError, is_whole_id, resolve
from armillary.cli.session import api_client, fail
from armillary.sdk import Client
from armillary.sdk.jobs import TERMINAL_STATUSES

app = typer.Typer(help="Jobs: run workflows, follow them, read their logs.", no_args_is_help=True)

console = terminal(soft_wrap=True)
err = terminal(stderr=True, highlight=False, soft_wrap=True)

_LIST_PAGE = 200


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TriggerKind(StrEnum):
    API = "api"
    CLI = "cli"
    SCHEDULE = "schedule"


ProjectOption = Annotated[str, typer.Option("--project", "-p", help="Project slug")]
JobArgument = Annotated[
    str, typer.Argument(help="Job id, or a unique prefix of one (as git takes short hashes)")
]
PrefixProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="Project to look a job id prefix up in (default: every project you can see)",
    ),
]


# -- job ids by prefix -----------------------------------------------------------------------


def _pages(client: Client, path: str) -> Iterator[dict[str, Any]]:
    offset = 0
    while True:
        page = client.request("GET", path, params={"limit": _LIST_PAGE, "offset": offset}).json()
        yield from page["items"]
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return


def _job_candidates(client: Client, projects: list[str]) -> Iterator[tuple[str, str]]:
    for project in projects:
        for job in _pages(client, f"/api/v1/projects/{quote(project, safe='')}/jobs"):
            created = when(job["created_at"])
            yield job["id"], f"{project}/{job['workflow']} v{job['version']} {created}"


def _job_id(client: Client, given: str, project: str | None) -> str:
    """The whole id of the job ``given`` names (an id, or a unique prefix of one). The API
    takes whole ids only, so a prefix is looked up among the jobs of ``project``, or of every
    project the caller can see."""
    if is_whole_id(given):
        return given
    if project is not None:
        projects = [project]
    else:
        projects = [item["slug"] for item in _pages(client, "/api/v1/projects")]
    try:
        return resolve(given, _job_candidates(client, projects), "job")
    except PrefixError as exc:
        fail(str(exc))


# -- commands --------------------------------------------------------------------------------


def _parameters(pairs: list[str]) -> dict[str, Any]:
    """``k=v`` pairs as a dict; a value that is valid JSON is taken as JSON, else a string."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            fail(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            parameters[key] = json.loads(raw)
        except ValueError:
            parameters[key] = raw
    return parameters


def _iso(value: str | None, option: str) -> str | None:
    """An ISO 8601 instant as the API takes it; UTC unless it carries an offset."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} expects an ISO 8601 date or time, e.g. 2025-01-31T12:00:00; got {value!r}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()


@app.command("run")
def run(
    workflow: Annotated[str, typer.Argument(help="Workflow name")],
    project: ProjectOption,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="KEY=VALUE, repeatable; VALUE is parsed as JSON when it is valid JSON "
            '(5, true, [1,2], {"a":1}), else taken as a string',
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Run at most once per key: a repeat returns the job already started"),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            "--wait/--no-wait",
            help="Follow the job until it ends; exit status 1 unless it succeeded",
        ),
    ] = True,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Start a job of a workflow's latest version, and follow it until it ends (a live table
    on a terminal, a plain line per change in a pipe or CI log). With ``--output json|yaml``
    the progress goes to stderr and stdout gets the job as it ended."""
    parameters = _parameters(param or [])
    # Scripts read the job from stdout; what happens meanwhile goes to stderr.
    screen = console if output is OutputFormat.TABLE else err
    with api_client() as client:
        job = client.jobs.run(
            project, workflow, parameters, idempotency_key=idempotency_key, trigger="cli"
        )
        screen.print(
            f"Started job {job['id']}: {escape(job['workflow'])} version {job['version']} "
            f"({status(job['status'])})"
        )
        if wait:
            job = follow(client, job, screen, err)
    if print_data(output, job):
        pass
    elif wait:
        console.print(summary(job))
    if wait and job["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("list")
def list_jobs(
    project: ProjectOption,
    status_: Annotated[
        JobStatus | None, typer.Option("--status", help="Only jobs in this state")
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="Only jobs of this workflow")] = None,
    trigger: Annotated[TriggerKind | None, typer.Option(help="Only jobs started so")] = None,
    since: Annotated[
        str | None, typer.Option(help="Created at or after (ISO 8601; UTC unless an offset)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Created before (ISO 8601; UTC unless an offset)")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=200, help="At most this many")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many (newest first)")] = 0,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """A project's jobs, newest first."""
    since_iso, until_iso = _iso(since, "--since"), _iso(until, "--until")
    with api_client() as client:
        page = client.jobs.list(
            project,
            status=status_.value if status_ else None,
            workflow=workflow,
            trigger=trigger.value if trigger else None,
            since=since_iso,
            until=until_iso,
            limit=limit,
            offset=offset,
        )
    if print_data(output, page):
        return
    jobs = page["items"]
    if not jobs:
        console.print(f"No jobs in project {escape(project)} match.")
        return
    table = Table(title=f"Jobs of {escape(project)}")
    table.add_column("Job")
    table.add_column("Workflow", style="bold")
    table.add_column("Version", justify="right")
    table.add_column("Status")
    table.add_column("Trigger")
    table.add_column("Created")
    table.add_column("Duration", justify="right")
    for job in jobs:
        table.add_row(
            job["id"],
            escape(job["workflow"]),
            str(job["version"]),
            status(job["status"]),
            escape(job["trigger"]),
            when(job["created_at"]),
            duration(job["started_at"], job["finished_at"]),
        )
    # Whole ids at 80 columns: the trigger, creation time and version give way first.
    fit_table(table, console, optional=("Trigger", "Created", "Version"), keep_whole=("Job",))
    console.print(table)
    first = page["offset"] + 1
    console.print(f"{first}-{page['offset'] + len(jobs)} of {page['total']}")


@app.command("show")
def show(
    job_id: JobArgument,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            "-w",
            help="Follow the job until it ends (a live table with each running task's "
            "progress on a terminal, plain lines otherwise), then show it",
        ),
    ] = False,
    project: PrefixProjectOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """A job: its workflow version, state and timings, then each task's."""
    screen = console if output is OutputFormat.TABLE else err
    with api_client() as client:
        job = client.jobs.get(_job_id(client, job_id, project))
        if watch and job["status"] not in TERMINAL_STATUSES:
            job = follow(client, job, screen, err)
    if print_data(output, job):
        return
    console.print(f"[bold]Job {job['id']}[/bold]")
    facts = {
        "workflow": f"{escape(job['workflow'])} (version {job['version']})",
        "status": status(job["status"]),
        "trigger": escape(job["trigger"]),
        "parameters": escape(json.dumps(job["parameters"], default=str, ensure_ascii=False)),
        "created": when(job["created_at"]),
        "started": when(job["started_at"]),
        "finished": when(job["finished_at"]),
        "duration": duration(job["started_at"], job["finished_at"]),
    }
    if job["cancel_requested_at"]:
        facts["cancel asked"] = when(job["cancel_requested_at"])
    if job["error"]:
        facts["error"] = f"[red]{escape(job['error'])}[/red]"
    for key, value in facts.items():
        console.print(f"{key + ':':<13} {value}")
    console.print(task_table(job, console, details=True))
    for task in job["tasks"]:
        # Errors the table cut short, in full.
        if task["error"] and excerpt(task["error"]) != task["error"]:
            console.print(f"[bold]{escape(task['name'])}[/bold] error (attempt {attempt(task)}):")
            console.print(escape(task["error"]), highlight=False)


@app.command("logs")
def logs(
    job_id: JobArgument,
    task: Annotated[str, typer.Argument(help="Task name")],
    attempt: Annotated[
        int | None, typer.Option(min=1, help="Which attempt; the latest when omitted")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep printing new output until the attempt ends"),
    ] = False,
    project: PrefixProjectOption = None,
    output: Annotated[
        OutputFormat,
        typer.Option(
            "--output",
            "-o",
            case_sensitive=False,
            envvar=OUTPUT_ENV,
            help='table: the output as written; json: JSON Lines, {"line": n, "text": ...} '
            "per line as it arrives; yaml: a list of the same objects",
        ),
    ] = OutputFormat.TABLE,
) -> None:
    """A task's output: as written (raw text on stdout), or a record per line for scripts."""
    printer = LogPrinter(output)
    with api_client() as client:
        job_id = _job_id(client, job_id, project)
        try:
            if follow:
                for chunk in client.jobs.follow_logs(job_id, task, attempt):
                    printer.write(chunk)
            else:
                printer.write(client.jobs.logs(job_id, task, attempt))
            printer.close()
        except BrokenPipeError:
            # The reader went away (`| head`): not an error. Later flushes must not fail too.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


@app.command("cancel")
def cancel(
    job_id: JobArgument,
    project: PrefixProjectOption = None,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Cancel a job: tasks not yet running are cancelled; running ones are stopped."""
    with api_client() as client:
        job = client.jobs.cancel(_job_id(client, job_id, project))
    if print_data(output, job):
        return
    if job["status"] == "cancelled":
        console.print(f"Cancelled job {job['id']}")
        return
    running = [task["name"] for task in job["tasks"] if task["status"] == "running"]
    console.print(
        f"Cancelling job {job['id']}: waiting for {len(running)} running task(s) to stop "
        f"({escape(', '.join(running))})"
    )
