"""What the CLI prints, against the platform on a loopback port: tables that fit 80 columns
with whole ids, ``--output json|yaml`` that parses, job ids by unique prefix, and plain
progress lines (no control sequences) when stdout is not a terminal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from tests.integration.cli.test_cli_jobs import account, config_dir, env, runner
from tests.integration.sdk.test_sdk_datasets import Account, start_server, write_csv
from typer.testing import CliRunner

from armillary.cli.main import app
from armillary.sdk import Client

__all__ = ["account", "config_dir", "env", "runner", "start_server"]  # fixtures, by name

NARROW = {"COLUMNS": "80"}
CONTROL = re.compile(r"\x1b|\r")


def _start(account: Account, count: int) -> list[str]:
    with Client(account.url, account.token) as client:
        return [client.jobs.run(account.project, "nightly")["id"] for _ in range(count)]


def test_jobs_list_fits_80_columns_with_whole_ids(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    ids = _start(account, 3)

    result = runner.invoke(app, ["jobs", "list", "-p", account.project], env={**env, **NARROW})

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" not in result.stdout
    for job in ids:
        assert any(job in line for line in lines), job


def test_jobs_show_fits_80_columns(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    (job,) = _start(account, 1)
    result = runner.invoke(app, ["jobs", "show", job], env={**env, **NARROW})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "…" not in result.stdout
    assert f"Job {job}" in result.stdout


def test_json_and_yaml_output_parse(
    runner: CliRunner, account: Account, env: dict[str, str], tmp_path: Path
) -> None:
    ids = _start(account, 2)
    base = ["jobs", "list", "-p", account.project]

    as_json = runner.invoke(app, [*base, "--output", "json"], env=env)
    as_yaml = runner.invoke(app, [*base, "-o", "yaml"], env=env)

    assert as_json.exit_code == as_yaml.exit_code == 0, as_json.output + as_yaml.output
    page = json.loads(as_json.stdout)
    assert [job["id"] for job in page["items"]] == ids[::-1]
    assert page["total"] == 2
    assert yaml.safe_load(as_yaml.stdout) == page

    shown = runner.invoke(app, ["jobs", "show", ids[0], "-o", "json"], env=env)
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert detail["id"] == ids[0]
    assert [task["name"] for task in detail["tasks"]] == ["warm", "report"]

    started = runner.invoke(
        app, ["jobs", "run", "nightly", "-p", account.project, "--no-wait", "-o", "yaml"], env=env
    )
    assert started.exit_code == 0, started.output
    assert yaml.safe_load(started.stdout)["status"] == "queued"

    source = write_csv(tmp_path / "sales.csv", rows=50)
    uploaded = runner.invoke(
        app,
        ["datasets", "upload", str(source), "-p", account.project, "-n", "sales", "-o", "json"],
        env=env,
    )
    assert uploaded.exit_code == 0, uploaded.output
    assert json.loads(uploaded.stdout)["created"] is True
    listed = runner.invoke(app, ["datasets", "list", "-p", account.project, "-o", "yaml"], env=env)
    assert [d["name"] for d in yaml.safe_load(listed.stdout)] == ["sales"]
    versions = runner.invoke(
        app, ["datasets", "show", "-p", account.project, "-n", "sales", "-o", "json"], env=env
    )
    assert json.loads(versions.stdout)["versions"][0]["row_count"] == 50


def test_job_ids_by_unique_prefix(runner: CliRunner, account: Account, env: dict[str, str]) -> None:
    ids = _start(account, 2)
    # The shortest prefix of the first id that the second does not share.
    length = next(n for n in range(1, 37) if ids[0][:n] != ids[1][:n])
    prefix = ids[0][: max(length, 4)]

    for options in ([], ["-p", account.project]):
        shown = runner.invoke(app, ["jobs", "show", prefix, *options, "-o", "json"], env=env)
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["id"] == ids[0]

    cancelled = runner.invoke(app, ["jobs", "cancel", prefix.upper()], env=env)
    assert cancelled.exit_code == 0, cancelled.output
    assert f"Cancelled job {ids[0]}" in cancelled.stdout

    logs = runner.invoke(app, ["jobs", "logs", prefix, "warm"], env=env)
    assert logs.exit_code == 0, logs.output

    unknown = "ffffffff-ffff" if not any(i.startswith("ffff") for i in ids) else "0000-0000"
    missing = runner.invoke(app, ["jobs", "show", unknown], env=env)
    assert missing.exit_code == 1
    assert f"No job id starts with '{unknown}'" in missing.stderr


def test_an_ambiguous_prefix_lists_the_candidates(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    # Start jobs until two share a first character (at most 17 by pigeonhole).
    ids: list[str] = []
    with Client(account.url, account.token) as client:
        while len({job[0] for job in ids}) == len(ids):
            ids.append(client.jobs.run(account.project, "nightly")["id"])
    shared = ids[-1][0]
    matching = sorted(job for job in ids if job.startswith(shared))

    result = runner.invoke(app, ["jobs", "show", shared], env=env)

    assert result.exit_code == 1
    assert f"Job id prefix '{shared}' is ambiguous" in result.stderr
    assert f"it matches {len(matching)} jobs" in result.stderr
    for job in matching:
        assert f"{job}  {account.project}/nightly v1" in result.stderr
    assert "Traceback" not in result.output


def test_off_a_terminal_progress_is_plain_lines(
    runner: CliRunner, account: Account, env: dict[str, str], tmp_path: Path
) -> None:
    (job,) = _start(account, 1)
    with Client(account.url, account.token) as client:
        client.jobs.cancel(job)
    watched = runner.invoke(app, ["jobs", "show", job, "--watch"], env=env)
    assert watched.exit_code == 0, watched.output
    assert not CONTROL.search(watched.output)

    source = write_csv(tmp_path / "big.csv", rows=20_000)
    uploaded = runner.invoke(
        app, ["datasets", "upload", str(source), "-p", account.project, "-n", "big"], env=env
    )
    assert uploaded.exit_code == 0, uploaded.output
    assert not CONTROL.search(uploaded.output)
    progress = [line for line in uploaded.stderr.splitlines() if line.startswith("Uploading")]
    assert progress, uploaded.stderr
    assert progress[-1].startswith("Uploading big.csv: ")
    assert progress[-1].endswith("(100%)")
    assert len(progress) <= 11  # a line per tenth at most, not one per chunk


def test_dataset_tables_fit_80_columns(
    runner: CliRunner, account: Account, env: dict[str, str], tmp_path: Path
) -> None:
    from tests.integration.sdk.test_sdk_datasets import sha256_of

    source = write_csv(tmp_path / "sales.csv", rows=200)
    p = ["-p", account.project, "-n", "sales"]
    assert runner.invoke(app, ["datasets", "upload", str(source), *p], env=env).exit_code == 0
    narrow = {**env, **NARROW}

    for args in (["datasets", "show", *p], ["datasets", "show", *p, "-v", "1"]):
        result = runner.invoke(app, args, env=narrow)
        assert result.exit_code == 0, result.output
        assert "…" not in result.stdout, args
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, args
    assert sha256_of(source) in result.stdout  # the version's facts: the whole digest


def test_run_with_json_output_keeps_progress_off_stdout(
    runner: CliRunner, account: Account, env: dict[str, str]
) -> None:
    with Client(account.url, account.token) as client:
        job = client.jobs.run(account.project, "nightly", idempotency_key="json-run")
        client.jobs.cancel(job["id"])

    result = runner.invoke(
        app,
        ["jobs", "run", "nightly", "-p", account.project, "--idempotency-key", "json-run"],
        env={**env, "ARMILLARY_OUTPUT": "json"},
    )

    assert result.exit_code == 1  # the job did not succeed
    ended = json.loads(result.stdout)  # stdout is the job and nothing else
    assert ended["id"] == job["id"]
    assert ended["status"] == "cancelled"
    assert f"Started job {job['id']}" in result.stderr
