"""``armillary jobs``: run a workflow and watch it, list history, inspect, read logs, cancel."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from armillary.cli.session import api_client, fail
from armillary.sdk import Client
from armillary.sdk.jobs import TERMINAL_STATUSES
from armillary.sdk.types import Job, JobDetail, TaskRun

app = typer.Typer(help="Jobs: run workflows, follow them, read their logs.", no_args_is_help=True)

console = Console(soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

POLL_INTERVAL = 0.5
_EXCERPT = 60
_STATUS_STYLES = {
    "pending": "dim",
    "queued": "cyan",
    "running": "yellow",
    "retrying": "magenta",
    "succeeded": "green",
    "failed": "red",
    "upstream_failed": "red",
    "skipped": "dim",
    "cancelled": "bright_black",
}


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
JobArgument = Annotated[str, typer.Argument(help="Job id")]


# -- formatting ------------------------------------------------------------------------------


def _status(status: str) -> str:
    style = _STATUS_STYLES.get(status)
    return f"[{style}]{escape(status)}[/{style}]" if style else escape(status)


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _when(value: str | None) -> str:
    # ISO timestamp (UTC) to the second, as the datasets commands show them.
    return value[:19].replace("T", " ") if value else "-"


def _seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _duration(started: str | None, finished: str | None) -> str:
    """Time from start to finish, or to now while it runs; ``-`` before it started."""
    start = _instant(started)
    if start is None:
        return "-"
    end = _instant(finished) or datetime.now(UTC)
    return _seconds(max((end - start).total_seconds(), 0.0))


def _excerpt(text: str | None, width: int = _EXCERPT) -> str:
    """The first line of ``text``, cut to ``width`` characters."""
    if not text:
        return ""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    if len(first) > width or len(lines) > 1:
        first = first[: width - 1].rstrip() + "…"
    return first


def _outputs(outputs: dict[str, Any] | None) -> str:
    if not outputs:
        return "-"
    text = json.dumps(outputs, separators=(",", ":"), default=str, ensure_ascii=False)
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def _attempt(run: TaskRun) -> str:
    return f"{run['attempt']}/{run['max_attempts']}"


_PROGRESS_METRICS = 2
_PROGRESS_MESSAGE = 40


def _progress(run: TaskRun) -> str:
    """What a running task last said about how far it got: ``fold 2/5 (40%) · message ·
    accuracy=0.91 loss=0.25``; empty for a task that is not running or said nothing."""
    # Older servers send no progress.
    progress = run.get("progress")
    if run["status"] != "running" or progress is None:
        return ""
    text = str(progress.get("stage") or "")
    current, total = progress.get("current"), progress.get("total")
    if isinstance(current, int) and isinstance(total, int) and total > 0:
        text += f" {current}/{total} ({min(current / total, 1.0):.0%})"
    elif isinstance(current, int):
        text += f" {current}"
    parts = [text.strip()]
    message = progress.get("message")
    if isinstance(message, str) and message:
        parts.append(_excerpt(message, _PROGRESS_MESSAGE))
    metrics = progress.get("metrics")
    if isinstance(metrics, dict):
        numbers = [(k, v) for k, v in metrics.items() if isinstance(v, int | float)]
        if numbers:
            shown = numbers[:_PROGRESS_METRICS]
            parts.append(" ".join(f"{name}={value:.4g}" for name, value in shown))
    return " · ".join(part for part in parts if part)


def _task_table(job: JobDetail, *, details: bool) -> Table:
    table = Table(title="Tasks")
    table.add_column("Task", style="bold")
    if details:
        table.add_column("Type")
    table.add_column("Status")
    table.add_column("Attempt", justify="right")
    if details:
        table.add_column("Started")
    table.add_column("Duration", justify="right")
    table.add_column("Progress")
    table.add_column("Error")
    if details:
        table.add_column("Outputs")
    for run in job["tasks"]:
        cells = [escape(run["name"])]
        if details:
            cells.append(escape(run["type"]))
        cells += [_status(run["status"]), _attempt(run)]
        if details:
            cells.append(_when(run["started_at"]))
        cells += [
            _duration(run["started_at"], run["finished_at"]),
            escape(_progress(run)),
            f"[red]{escape(_excerpt(run['error']))}[/red]" if run["error"] else "",
        ]
        if details:
            cells.append(escape(_outputs(run["outputs"])))
        table.add_row(*cells)
    return table


def _summary(job: Job) -> str:
    """``Job <id> succeeded in 3.2s`` (with the job's error when there is one)."""
    text = f"Job {job['id']} {_status(job['status'])}"
    if job["started_at"]:
        text += f" in {_duration(job['started_at'], job['finished_at'])}"
    if job["error"]:
        text += f": {escape(_excerpt(job['error'], 200))}"
    return text


class _LiveView:
    """What the Live display draws: the latest polled job, durations counted at draw time."""

    def __init__(self, job: JobDetail) -> None:
        self.job = job

    def render(self) -> RenderableType:
        job = self.job
        line = f"[bold]{escape(job['workflow'])}[/bold] version {job['version']}: "
        line += _status(job["status"])
        if job["started_at"]:
            line += f" {_duration(job['started_at'], job['finished_at'])}"
        header = Text.from_markup(line)
        return Group(header, _task_table(job, details=False))


class _ChangePrinter:
    """Plain lines for a log or a pipe: one per change of the job's or a task's state."""

    def __init__(self, job: JobDetail) -> None:
        self._job_status = job["status"]
        self._tasks = {run["name"]: (run["status"], run["attempt"]) for run in job["tasks"]}

    def __call__(self, job: JobDetail) -> None:
        if job["status"] != self._job_status:
            self._job_status = job["status"]
            if job["status"] not in TERMINAL_STATUSES:  # the summary line says the end
                console.print(f"job {_status(job['status'])}")
        for run in job["tasks"]:
            state = (run["status"], run["attempt"])
            if self._tasks.get(run["name"]) == state:
                continue
            self._tasks[run["name"]] = state
            line = f"task {escape(run['name'])}: {_status(run['status'])}"
            if run["attempt"]:
                line += f" (attempt {_attempt(run)})"
            if run["finished_at"] and run["started_at"]:
                line += f" in {_duration(run['started_at'], run['finished_at'])}"
            if run["error"]:
                line += f": {escape(_excerpt(run['error'], 200))}"
            console.print(line)


def _follow(client: Client, job: JobDetail) -> JobDetail:
    """Poll the job until it ends: a live table on a terminal (with each running task's
    progress), a line per change otherwise. Ctrl-C stops watching, not the job."""
    try:
        if console.is_terminal:
            view = _LiveView(job)
            with Live(console=console, get_renderable=view.render, refresh_per_second=4) as live:

                def update(latest: JobDetail) -> None:
                    view.job = latest
                    live.refresh()

                return client.jobs.wait(job["id"], POLL_INTERVAL, on_update=update)
        return client.jobs.wait(job["id"], POLL_INTERVAL, on_update=_ChangePrinter(job))
    except KeyboardInterrupt:
        err.print(
            f"Stopped watching; the job goes on. `armillary jobs cancel {job['id']}` cancels it."
        )
        raise typer.Exit(130) from None


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
) -> None:
    """Start a job of a workflow's latest version, and follow it until it ends."""
    parameters = _parameters(param or [])
    with api_client() as client:
        job = client.jobs.run(
            project, workflow, parameters, idempotency_key=idempotency_key, trigger="cli"
        )
        console.print(
            f"Started job {job['id']}: {escape(job['workflow'])} version {job['version']} "
            f"({_status(job['status'])})"
        )
        if not wait:
            return
        job = _follow(client, job)
    console.print(_summary(job))
    if job["status"] != "succeeded":
        raise typer.Exit(1)


@app.command("list")
def list_jobs(
    project: ProjectOption,
    status: Annotated[JobStatus | None, typer.Option(help="Only jobs in this state")] = None,
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
) -> None:
    """A project's jobs, newest first."""
    since_iso, until_iso = _iso(since, "--since"), _iso(until, "--until")
    with api_client() as client:
        page = client.jobs.list(
            project,
            status=status.value if status else None,
            workflow=workflow,
            trigger=trigger.value if trigger else None,
            since=since_iso,
            until=until_iso,
            limit=limit,
            offset=offset,
        )
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
            _status(job["status"]),
            escape(job["trigger"]),
            _when(job["created_at"]),
            _duration(job["started_at"], job["finished_at"]),
        )
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
            "progress), then show it",
        ),
    ] = False,
) -> None:
    """A job: its workflow version, state and timings, then each task's."""
    with api_client() as client:
        job = client.jobs.get(job_id)
        if watch and job["status"] not in TERMINAL_STATUSES:
            job = _follow(client, job)
    console.print(f"[bold]Job {job['id']}[/bold]")
    facts = {
        "workflow": f"{escape(job['workflow'])} (version {job['version']})",
        "status": _status(job["status"]),
        "trigger": escape(job["trigger"]),
        "parameters": escape(json.dumps(job["parameters"], default=str, ensure_ascii=False)),
        "created": _when(job["created_at"]),
        "started": _when(job["started_at"]),
        "finished": _when(job["finished_at"]),
        "duration": _duration(job["started_at"], job["finished_at"]),
    }
    if job["cancel_requested_at"]:
        facts["cancel asked"] = _when(job["cancel_requested_at"])
    if job["error"]:
        facts["error"] = f"[red]{escape(job['error'])}[/red]"
    for key, value in facts.items():
        console.print(f"{key + ':':<13} {value}")
    console.print(_task_table(job, details=True))
    for run in job["tasks"]:
        # Errors the table cut short, in full.
        if run["error"] and _excerpt(run["error"]) != run["error"]:
            console.print(f"[bold]{escape(run['name'])}[/bold] error (attempt {_attempt(run)}):")
            console.print(escape(run["error"]), highlight=False)


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
) -> None:
    """A task's output, as written (raw text on stdout)."""
    with api_client() as client:
        try:
            if follow:
                for chunk in client.jobs.follow_logs(job_id, task, attempt):
                    sys.stdout.write(chunk)
                    sys.stdout.flush()
            else:
                sys.stdout.write(client.jobs.logs(job_id, task, attempt))
                sys.stdout.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): not an error. Later flushes must not fail too.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


@app.command("cancel")
def cancel(job_id: JobArgument) -> None:
    """Cancel a job: tasks not yet running are cancelled; running ones are stopped."""
    with api_client() as client:
        job = client.jobs.cancel(job_id)
    if job["status"] == "cancelled":
        console.print(f"Cancelled job {job['id']}")
        return
    running = [run["name"] for run in job["tasks"] if run["status"] == "running"]
    console.print(
        f"Cancelling job {job['id']}: waiting for {len(running)} running task(s) to stop "
        f"({escape(', '.join(running))})"
    )
