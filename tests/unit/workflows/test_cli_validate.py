"""``armillary workflow validate``: no server, every error with its path, exit status."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from armillary.cli.main import app

WIDE = {"COLUMNS": "200"}

VALID = """\
name: etl
parameters:
  day: "2025-01-01"
tasks:
  - name: extract
    type: python
    params:
      bundle: etl-code
      entrypoint: jobs.extract
      args: {day: "${params.day}"}
    outputs: [rows]
  - name: wait
    type: sleep
    params: {seconds: 1}
    needs: [extract]
"""


def test_a_valid_spec_exits_0_and_lists_skipped_checks(tmp_path: Path) -> None:
    path = tmp_path / "etl.yaml"
    path.write_text(VALID)
    result = CliRunner().invoke(app, ["workflow", "validate", str(path)], env=WIDE)
    assert result.exit_code == 0, result.output
    assert "is valid" in result.stdout
    assert "2 task(s)" in result.stdout
    assert "checked on apply: code bundle exists in the project (tasks[0].params.bundle)" in (
        result.stdout
    )
    assert result.stdout.index("is valid") < result.stdout.index("checked on apply")


def test_invalid_spec_prints_only_its_errors(tmp_path: Path) -> None:
    """What the server checks later is no news next to errors (it read like one)."""
    path = tmp_path / "bad.yaml"
    path.write_text(VALID.replace("seconds: 1", "seconds: soon"))
    result = CliRunner().invoke(app, ["workflow", "validate", str(path)], env=WIDE)
    assert result.exit_code == 1
    assert "tasks[1].params.seconds" in result.stderr
    assert "code bundle exists" not in result.output
    assert "skipped" not in result.output


def test_errors_exit_1_with_every_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "name": "bad",
                "schedule": {"cron": "every day"},
                "tasks": [
                    {"name": "a", "type": "sleep", "params": {"seconds": "soon"}},
                    {"name": "b", "type": "teleport", "needs": ["a", "zz"]},
                ],
            }
        )
    )
    result = CliRunner().invoke(app, ["workflow", "validate", str(path)], env=WIDE)
    assert result.exit_code == 1
    assert "4 error(s)" in result.stderr
    for expected in [
        "schedule.cron",
        "tasks[0].params.seconds",
        "tasks[1].type",
        "tasks[1].needs[1]",
        "(invalid_cron)",
        "(unknown_task_type)",
    ]:
        assert expected in result.stderr, result.stderr
    assert "is valid" not in result.stdout


def test_an_unreadable_file_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("tasks: [")
    result = CliRunner().invoke(app, ["workflow", "validate", str(path)], env=WIDE)
    assert result.exit_code == 1
    assert "not valid YAML" in result.output
