"""How a job looks in a terminal: its task table, and following it while it runs.

On a terminal a job is followed with a live table that redraws in place. Anywhere else (a
pipe, a CI log) it is followed with plain lines: one per change of the job's or a task's
state, and a running task's progress at most every :data:`PROGRESS_LINE_SECONDS`; no cursor
movement, no control sequences.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from armillary.cli.output import fit_table
from armillary.sdk import Client
from armillary.sdk.jobs import TERMINAL_STATUSES
from armillary.sdk.types import Job, JobDetail, TaskRun

POLL_INTERVAL = 0.5
#: Off a terminal, a running task's progress is printed at most this often.
PROGRESS_LINE_SECONDS = 10.0
_EXCERPT = 60
_PROGRESS_METRICS = 2
_PROGRESS_MESSAGE = 40
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


def status(value: str) -> str:
    """A status in its colour (Rich markup)."""
    style = _STATUS_STYLES.get(value)
    return f"[{style}]{escape(value)}[/{style}]" if style else escape(value)


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def when(value: str | None) -> str:
    """An ISO timestamp (UTC) to the second, as the datasets commands show them."""
    return value[:19].replace("T", " ") if value else "-"


def _seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def duration(started: str | None, finished: str | None) -> str:
    """Time from start to finish, or to now while it runs; ``-`` before it started."""
    start = _instant(started)
    if start is None:
        return "-"
    end = _instant(finished) or datetime.now(UTC)
    return _seconds(max((end - start).total_seconds(), 0.0))


def excerpt(text: str | None, width: int = _EXCERPT) -> str:
    """The first line of ``text``, cut to ``width`` characters (the full text is shown
    elsewhere: below the table, or with ``--output json``)."""
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


def attempt(run: TaskRun) -> str:
    """``attempt/max_attempts``."""
    return f"{run['attempt']}/{run['max_attempts']}"


def progress(run: TaskRun) -> str:
    """What a running task last said about how far it got: ``fold 2/5 (40%) · message ·
    accuracy=0.91 loss=0.25``; empty for a task that is not running or said nothing."""
    # Older servers send no progress.
    reported = run.get("progress")
    if run["status"] != "running" or reported is None:
        return ""
    text = str(reported.get("stage") or "")
    current, total = reported.get("current"), reported.get("total")
    if isinstance(current, int) and isinstance(total, int) and total > 0:
        text += f" {current}/{total} ({min(current / total, 1.0):.0%})"
    elif isinstance(current, int):
        text += f" {current}"
    parts = [text.strip()]
    message = reported.get("message")
    if isinstance(message, str) and message:
        parts.append(excerpt(message, _PROGRESS_MESSAGE))
    metrics = reported.get("metrics")
    if isinstance(metrics, dict):
        numbers = [(k, v) for k, v in metrics.items() if isinstance(v, int | float)]
        if numbers:
            shown = numbers[:_PROGRESS_METRICS]
            parts.append(" ".join(f"{name}={value:.4g}" for name, value in shown))
    return " · ".join(part for part in parts if part)


def task_table(job: JobDetail, console: Console, *, details: bool) -> Table:
    """The job's tasks, fitted to ``console``'s width (at 80 columns the type, start time
    and outputs give way first)."""
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
        cells += [status(run["status"]), attempt(run)]
        if details:
            cells.append(when(run["started_at"]))
        cells += [
            duration(run["started_at"], run["finished_at"]),
            escape(progress(run)),
            f"[red]{escape(excerpt(run['error']))}[/red]" if run["error"] else "",
        ]
        if details:
            cells.append(escape(_outputs(run["outputs"])))
        table.add_row(*cells)
    fit_table(table, console, optional=("Outputs", "Started", "Type", "Attempt"))
    return table


def summary(job: Job) -> str:
    """``Job <id> succeeded in 3.2s`` (with the job's error when there is one)."""
    text = f"Job {job['id']} {status(job['status'])}"
    if job["started_at"]:
        text += f" in {duration(job['started_at'], job['finished_at'])}"
    if job["error"]:
        text += f": {escape(excerpt(job['error'], 200))}"
    return text


class _LiveView:
    """What the Live display draws: the latest polled job, durations counted at draw time."""

    def __init__(self, job: JobDetail, console: Console) -> None:
        self.job = job
        self.console = console

    def render(self) -> RenderableType:
        job = self.job
        line = f"[bold]{escape(job['workflow'])}[/bold] version {job['version']}: "
        line += status(job["status"])
        if job["started_at"]:
            line += f" {duration(job['started_at'], job['finished_at'])}"
        header = Text.from_markup(line)
        return Group(header, task_table(job, self.console, details=False))


class ChangeLines:
    """Plain lines for a log or a pipe: one per change of the job's or a task's state, and
    a running task's new progress at most every :data:`PROGRESS_LINE_SECONDS`."""

    def __init__(
        self, job: JobDetail, console: Console, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._console = console
        self._clock = clock
        self._job_status = job["status"]
        self._tasks = {run["name"]: (run["status"], run["attempt"]) for run in job["tasks"]}
        # Per task: the progress last printed, and when.
        self._progress: dict[str, tuple[str, float]] = {}

    def __call__(self, job: JobDetail) -> None:
        if job["status"] != self._job_status:
            self._job_status = job["status"]
            if job["status"] not in TERMINAL_STATUSES:  # the summary line says the end
                self._console.print(f"job {status(job['status'])}")
        for run in job["tasks"]:
            self._state_line(run)
            self._progress_line(run)

    def _state_line(self, run: TaskRun) -> None:
        state = (run["status"], run["attempt"])
        if self._tasks.get(run["name"]) == state:
            return
        self._tasks[run["name"]] = state
        line = f"task {escape(run['name'])}: {status(run['status'])}"
        if run["attempt"]:
            line += f" (attempt {attempt(run)})"
        if run["finished_at"] and run["started_at"]:
            line += f" in {duration(run['started_at'], run['finished_at'])}"
        if run["error"]:
            line += f": {escape(excerpt(run['error'], 200))}"
        self._console.print(line)

    def _progress_line(self, run: TaskRun) -> None:
        text = progress(run)
        if not text:
            return
        now = self._clock()
        last = self._progress.get(run["name"])
        if last is not None and (last[0] == text or now - last[1] < PROGRESS_LINE_SECONDS):
            return
        self._progress[run["name"]] = (text, now)
        self._console.print(f"task {escape(run['name'])}: {escape(text)}", highlight=False)


def follow(client: Client, job: JobDetail, console: Console, err: Console) -> JobDetail:
    """Poll the job until it ends, drawing on ``console``: a live table on a terminal (with
    each running task's progress), plain lines otherwise. Ctrl-C stops watching, not the
    job."""
    try:
        if console.is_terminal:
            view = _LiveView(job, console)
            with Live(console=console, get_renderable=view.render, refresh_per_second=4) as live:

                def update(latest: JobDetail) -> None:
                    view.job = latest
                    live.refresh()

                return client.jobs.wait(job["id"], POLL_INTERVAL, on_update=update)
        lines = ChangeLines(job, console)
        return client.jobs.wait(job["id"], POLL_INTERVAL, on_update=lines)
    except KeyboardInterrupt:
        err.print(
            f"Stopped watching; the job goes on. `armillary jobs cancel {job['id']}` cancels it."
        )
        raise typer.Exit(130) from None
