"""``armillary runs list/show/compare`` against the platform on a loopback port, with runs
logged by the ``armillary.tracking`` SDK signed in through ``armillary login``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.cli.test_cli_datasets import WIDE, config_dir, login, runner
from tests.integration.sdk.test_sdk_datasets import Account, StartServer, provision, start_server
from typer.testing import CliRunner

from armillary import tracking
from armillary.cli.main import app
from armillary.tracking import sdk

__all__ = ["config_dir", "runner", "start_server"]  # fixtures, used by name

# name -> (params, accuracy by step)
TRIALS = {
    "shallow": ({"depth": 2, "model": "rf"}, [0.70, 0.74, 0.78]),
    "deep": ({"depth": 8, "model": "rf"}, [0.80, 0.90, 0.95]),
    "linear": ({"depth": 0, "model": "logreg"}, [0.60, 0.70, 0.85]),
}


@pytest.fixture
def study(start_server: StartServer, runner: CliRunner) -> Iterator[tuple[Account, dict[str, str]]]:
    account = provision(start_server())
    login(runner, account)
    # Only the project is named: the server and token are what `armillary login` stored.
    tracking.configure(project=account.project)
    ids = {}
    try:
        with tracking.start_run("search", experiment="hpo") as parent:
            for name, (params, accuracy) in TRIALS.items():
                with tracking.start_run(name) as trial:
                    tracking.log_params(params)
                    for step, value in enumerate(accuracy):
                        tracking.log_metrics({"acc": value}, step=step)
                ids[name] = trial.id
        ids["search"] = parent.id
        yield account, ids
    finally:
        sdk._tracker.reset()


def _json(runner: CliRunner, *args: str) -> Any:
    result = runner.invoke(app, [*args, "--output", "json"], env=WIDE)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_runs_list_sorts_and_filters(
    runner: CliRunner, study: tuple[Account, dict[str, str]]
) -> None:
    account, ids = study
    project = ["-p", account.project, "-e", "hpo"]
    best_first = _json(runner, "runs", "list", *project, "--order-by", "metrics.acc DESC")
    # The parent has no acc: it comes last.
    assert [r["name"] for r in best_first] == ["deep", "linear", "shallow", "search"]
    assert best_first[0]["params"] == {"depth": "8", "model": "rf"}
    assert best_first[0]["parent_run_id"] == ids["search"]
    forests = _json(runner, "runs", "list", *project, "--filter", "params.model = 'rf'")
    assert sorted(r["name"] for r in forests) == ["deep", "shallow"]
    top = _json(runner, "runs", "list", *project, "--order-by", "metrics.acc", "--limit", "1")
    assert [r["name"] for r in top] == ["shallow"]

    table = runner.invoke(
        app, ["runs", "list", *project, "--order-by", "metrics.acc DESC"], env=WIDE
    )
    assert table.exit_code == 0, table.output
    rows = [line for line in table.stdout.splitlines() if ids["deep"] in line or "0.78" in line]
    assert ids["deep"] in rows[0]
    assert "0.95" in rows[0]
    assert "FINISHED" in rows[0]

    bad = runner.invoke(app, ["runs", "list", *project, "--filter", "metrics.acc > 'x'"], env=WIDE)
    assert bad.exit_code == 1
    assert "compared with a number" in bad.output


def test_runs_show_and_a_metric_history(
    runner: CliRunner, study: tuple[Account, dict[str, str]]
) -> None:
    account, ids = study
    shown = _json(runner, "runs", "show", "-p", account.project, ids["deep"])
    assert shown["metrics"] == {"acc": 0.95}
    assert shown["status"] == "FINISHED"
    history = _json(runner, "runs", "show", "-p", account.project, ids["deep"], "-m", "acc")
    assert [(p["step"], p["value"]) for p in history["points"]] == [
        (0, 0.80),
        (1, 0.90),
        (2, 0.95),
    ]
    table = runner.invoke(app, ["runs", "show", "-p", account.project, ids["deep"]], env=WIDE)
    assert table.exit_code == 0, table.output
    assert "deep" in table.stdout
    assert "Params" in table.stdout
    assert "0.95" in table.stdout
    missing = runner.invoke(app, ["runs", "show", "-p", account.project, "f" * 32], env=WIDE)
    assert missing.exit_code == 1
    assert "404" in missing.output


def test_runs_compare_exports_parallel_coordinates(
    runner: CliRunner, study: tuple[Account, dict[str, str]]
) -> None:
    account, ids = study
    export = _json(
        runner,
        "runs",
        "compare",
        "-p",
        account.project,
        "-e",
        "hpo",
        "--param",
        "depth",
        "--metric",
        "acc",
        "--filter",
        "metrics.acc >= 0.78",
        "--order-by",
        "metrics.acc DESC",
    )
    assert export["columns"] == ["run_id", "run_name", "params.depth", "metrics.acc"]
    assert export["rows"] == [
        [ids["deep"], "deep", "8", 0.95],
        [ids["linear"], "linear", "0", 0.85],
        [ids["shallow"], "shallow", "2", 0.78],
    ]
    table = runner.invoke(
        app,
        ["runs", "compare", "-p", account.project, "-e", "hpo", "--order-by", "params.depth"],
        env=WIDE,
    )
    assert table.exit_code == 0, table.output
    assert "params.model" in table.stdout
    assert "metrics.acc" in table.stdout
    lines = table.stdout.splitlines()
    order = [
        name for line in lines for name in ("linear", "shallow", "deep") if f" {name} " in line
    ]
    assert order == ["linear", "shallow", "deep"]
