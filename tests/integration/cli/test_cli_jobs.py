"""``armillary jobs ...`` against the platform on a loopback port.

No executor runs here: jobs stay queued until cancelled, which is what ``--wait`` is tested
against. Task logs are checked against a stand-in transport (raw output, options) and against
the server (a task that never ran).
"""

from __future__ import annotations

import functools
import io
import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from rich.console import Console
from rich.text import Text
from tests.integration.sdk.test_sdk_datasets import Account, StartServer, provision, start_server
from tests.integration.sdk.test_sdk_jobs import SPEC, LogServer, apply
from typer.testing import CliRunner

from armillary.cli import jobs as jobs_cli
from armillary.cli import session
from armillary.cli.main import app
from armillary.sdk import Client

__all__ = ["start_server"]  # a fixture, used by name

LOG_JOB = "0e6f1d2c-5a4b-4c3d-8e2f-1a2b3c4d5e6f"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private config directory, and no server or token from the environment."""
    path = tmp_path / "config"
    monkeypatch.setenv("ARMILLARY_CONFIG_DIR", str(path))
    monkeypatch.delenv("ARMILLARY_URL", raising=False)
    monkeypatch.delenv("ARMILLARY_TOKEN", raising=False)
    return path


@pytest.fixture
def account(start_server: StartServer) -> Account:
    account = provision(start_server())
    with Client(account.url, account.token) as client:
        apply(client, account.project)
    return account


@pytest.fixture
def env(account: Account) -> dict[str, str]:
    # Wide enough that Rich never folds or truncates a table cell.
    return {"ARMILLARY_URL": account.url, "ARMILLARY_TOKEN": account.token, "COLUMNS": "250"}


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def job_id(output: str) -> str:
    match = UUID.search(output)
    assert match, output
    return match.group(0)


def _rows(output: str) -> list[list[str]]:
    """The cells of a Rich table's lines, the heading (drawn with ┃) included."""
    return [
        [cell.strip() for cell in re.split("[│┃]", line)[1:-1]]
        for line in output.splitlines()
        if len(re.findall("[│┃]", line)) >= 3
    ]


def test_run_without_waiting_prints_the_job(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    args = ["jobs", "run", "nightly", "-p", account.project, "--no-wait"]
    result = runner.invoke(
        app,
        [*args, "--param", "seconds=5", "--param", "label=night run", "--param", "tags=[1, 2]"],
        env=env,
    )

    assert result.exit_code == 0, result.output
    assert "Started job " in result.stdout
    assert "nightly version 1 (queued)" in result.stdout
    started = job_id(result.stdout)
    with Client(account.url, account.token) as client:
        job = client.jobs.get(started)
    assert job["trigger"] == "cli"
    # JSON when the value is JSON, a string otherwise.
    assert job["parameters"] == {"seconds": 5, "label": "night run", "tags": [1, 2]}

    keyed = [*args, "--idempotency-key", "release-42"]
    first = runner.invoke(app, keyed, env=env)
    again = runner.invoke(app, keyed, env=env)
    assert first.exit_code == again.exit_code == 0, first.output + again.output
    assert job_id(first.stdout) == job_id(again.stdout) != started


def test_run_refuses_a_malformed_param(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    result = runner.invoke(
        app, ["jobs", "run", "nightly", "-p", account.project, "--param", "seconds"], env=env
    )
    assert result.exit_code == 1
    assert "--param expects KEY=VALUE" in result.stderr


def test_run_errors_print_the_problem(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    unknown = runner.invoke(app, ["jobs", "run", "nope", "-p", account.project], env=env)
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("Error:")
    assert "Not found (404): Workflow not found" in unknown.stderr
    assert "Traceback" not in unknown.output

    refused = runner.invoke(
        app,
        ["jobs", "run", "nightly", "-p", account.project, "--param", "nope=1", "--no-wait"],
        env=env,
    )
    assert refused.exit_code == 1
    assert "(422)" in refused.stderr

    elsewhere = runner.invoke(app, ["jobs", "list", "-p", "no-such-project"], env=env)
    assert elsewhere.exit_code == 1
    assert "(404)" in elsewhere.stderr


def test_wait_ends_with_exit_1_when_the_job_is_cancelled(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    key = "cancel-me"

    def cancel_once_started() -> None:
        with Client(account.url, account.token) as client:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                page = client.jobs.list(account.project)
                if page["items"]:
                    time.sleep(0.7)  # let the command poll once while queued
                    client.jobs.cancel(page["items"][0]["id"])
                    return
                time.sleep(0.05)

    thread = threading.Thread(target=cancel_once_started)
    thread.start()
    try:
        result = runner.invoke(
            app,
            ["jobs", "run", "nightly", "-p", account.project, "--idempotency-key", key],
            env=env,
        )
    finally:
        thread.join()

    assert result.exit_code == 1, result.output
    started = job_id(result.stdout)
    # Not a terminal: plain lines on each change, then the outcome.
    assert "task warm: cancelled" in result.stdout
    assert "task report: cancelled" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == f"Job {started} cancelled"

    # The same key again: the job is already over, so the wait ends at once.
    again = runner.invoke(
        app, ["jobs", "run", "nightly", "-p", account.project, "--idempotency-key", key], env=env
    )
    assert again.exit_code == 1
    assert job_id(again.stdout) == started
    assert f"Job {started} cancelled" in again.stdout


def test_wait_on_a_terminal_draws_a_live_table(
    runner: CliRunner, account: Account, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(jobs_cli, "console", Console(file=screen, force_terminal=True, width=200))
    with Client(account.url, account.token) as client:
        job = client.jobs.run(account.project, "nightly", idempotency_key="live")
        client.jobs.cancel(job["id"])

    result = runner.invoke(
        app,
        ["jobs", "run", "nightly", "-p", account.project, "--idempotency-key", "live"],
        env=env,
    )

    assert result.exit_code == 1, result.output
    drawn = Text.from_ansi(screen.getvalue()).plain
    assert "Tasks" in drawn
    for heading in ("Task", "Status", "Attempt", "Duration", "Error"):
        assert heading in drawn
    assert "warm" in drawn
    assert "report" in drawn
    assert "cancelled" in drawn
    assert f"Job {job['id']}" in drawn


def test_list_filters(runner: CliRunner, account: Account, env: dict[str, str]) -> None:
    with Client(account.url, account.token) as client:
        apply(client, account.project, {**SPEC, "name": "weekly"})
        nightly = client.jobs.run(account.project, "nightly")
        weekly = client.jobs.run(account.project, "weekly", trigger="cli")
        cancelled = client.jobs.run(account.project, "nightly")
        client.jobs.cancel(cancelled["id"])
    base = ["jobs", "list", "-p", account.project]

    everything = runner.invoke(app, base, env=env)
    assert everything.exit_code == 0, everything.output
    rows = _rows(everything.stdout)
    assert [row[0] for row in rows[1:]] == [cancelled["id"], weekly["id"], nightly["id"]]
    assert rows[0][:5] == ["Job", "Workflow", "Version", "Status", "Trigger"]
    assert rows[1][1:5] == ["nightly", "1", "cancelled", "api"]
    assert "1-3 of 3" in everything.stdout

    def listed(*options: str) -> list[str]:
        result = runner.invoke(app, [*base, *options], env=env)
        assert result.exit_code == 0, result.output
        return [row[0] for row in _rows(result.stdout)[1:]]

    assert listed("--workflow", "weekly") == [weekly["id"]]
    assert listed("--trigger", "cli") == [weekly["id"]]
    assert listed("--status", "cancelled") == [cancelled["id"]]
    assert listed("--status", "queued", "--workflow", "nightly") == [nightly["id"]]
    assert listed("--since", "2000-01-01") == [cancelled["id"], weekly["id"], nightly["id"]]
    assert listed("--since", "2000-01-01T00:00:00+02:00", "--limit", "1") == [cancelled["id"]]
    none = runner.invoke(app, [*base, "--until", "2000-01-01T00:00:00Z"], env=env)
    assert none.exit_code == 0
    assert "No jobs in project" in none.stdout

    bad = runner.invoke(app, [*base, "--since", "yesterday"], env=env)
    assert bad.exit_code == 1
    assert "--since expects an ISO 8601" in bad.stderr
    wrong_status = runner.invoke(app, [*base, "--status", "sleeping"], env=env)
    assert wrong_status.exit_code != 0


def test_show_prints_the_job_and_its_tasks(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    with Client(account.url, account.token) as client:
        job = client.jobs.run(account.project, "nightly", {"seconds": 7})

    result = runner.invoke(app, ["jobs", "show", job["id"]], env=env)

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Job {job['id']}" in out
    assert "workflow:     nightly (version 1)" in out
    assert "status:       queued" in out
    assert "trigger:      api" in out
    assert '"seconds": 7' in out
    rows = _rows(out)
    assert rows[0][:4] == ["Task", "Type", "Status", "Attempt"]
    assert [row[:4] for row in rows[1:]] == [
        ["warm", "sleep", "pending", "0/1"],
        ["report", "noop", "pending", "0/1"],
    ]

    missing = runner.invoke(app, ["jobs", "show", "00000000-0000-0000-0000-000000000000"], env=env)
    assert missing.exit_code == 1
    assert "(404)" in missing.stderr


def test_cancel(runner: CliRunner, account: Account, env: dict[str, str]) -> None:
    with Client(account.url, account.token) as client:
        job = client.jobs.run(account.project, "nightly")

    result = runner.invoke(app, ["jobs", "cancel", job["id"]], env=env)
    assert result.exit_code == 0, result.output
    assert f"Cancelled job {job['id']}" in result.stdout
    with Client(account.url, account.token) as client:
        assert client.jobs.get(job["id"])["status"] == "cancelled"

    again = runner.invoke(app, ["jobs", "cancel", job["id"]], env=env)
    assert again.exit_code == 1
    assert "(409)" in again.stderr
    assert "already cancelled" in again.stderr


def test_logs_write_raw_text(
    runner: CliRunner, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = LogServer([b"[rich] markup stays as is\n", b"step 2\n"])
    monkeypatch.setattr(
        session, "Client", functools.partial(Client, transport=httpx.MockTransport(server))
    )

    plain = runner.invoke(app, ["jobs", "logs", LOG_JOB, "train"], env=env)
    assert plain.exit_code == 0, plain.output
    assert plain.stdout == "[rich] markup stays as is\nstep 2\n"
    assert dict(server.requests[-1].url.params) == {"follow": "false"}

    followed = runner.invoke(
        app, ["jobs", "logs", LOG_JOB, "train", "--follow", "--attempt", "2"], env=env
    )
    assert followed.exit_code == 0, followed.output
    assert followed.stdout == "[rich] markup stays as is\nstep 2\n"
    assert dict(server.requests[-1].url.params) == {"follow": "true", "attempt": "2"}

    # For scripts: a record per line, whether the log is read whole or followed.
    records = [{"line": 1, "text": "[rich] markup stays as is"}, {"line": 2, "text": "step 2"}]
    as_json = runner.invoke(app, ["jobs", "logs", LOG_JOB, "train", "-f", "-o", "json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == records
    as_yaml = runner.invoke(app, ["jobs", "logs", LOG_JOB, "train", "-o", "yaml"], env=env)
    assert as_yaml.exit_code == 0, as_yaml.output
    assert yaml.safe_load(as_yaml.stdout) == records

    server.status = 404
    missing = runner.invoke(app, ["jobs", "logs", LOG_JOB, "train", "-f"], env=env)
    assert missing.exit_code == 1
    assert "Not Found (404): No such task" in missing.stderr


def test_logs_from_the_server(runner: CliRunner, account: Account, env: dict[str, str]) -> None:
    with Client(account.url, account.token) as client:
        job = client.jobs.run(account.project, "nightly")
        client.jobs.cancel(job["id"])

    # The task never ran: nothing to print, and --follow ends since the attempt is over.
    for follow in ([], ["--follow"]):
        result = runner.invoke(app, ["jobs", "logs", job["id"], "warm", *follow], env=env)
        assert result.exit_code == 0, result.output
        assert result.stdout == ""

    missing = runner.invoke(app, ["jobs", "logs", job["id"], "nope"], env=env)
    assert missing.exit_code == 1
    assert "(404): Task not found in this job" in missing.stderr
