"""``armillary workflow validate --output json|yaml``: the verdict as data, same exit status."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from armillary.cli.main import app

SPEC = """\
name: etl
tasks:
  - name: wait
    type: sleep
    params: {seconds: 1}
"""


def test_a_valid_spec_as_json(tmp_path: Path) -> None:
    path = tmp_path / "etl.yaml"
    path.write_text(SPEC)
    result = CliRunner().invoke(app, ["workflow", "validate", str(path), "--output", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["tasks"] == 1
    assert report["errors"] == []


def test_an_invalid_spec_as_yaml_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(SPEC.replace("seconds: 1", "seconds: soon"))
    result = CliRunner().invoke(app, ["workflow", "validate", str(path), "-o", "yaml"])
    assert result.exit_code == 1
    report = yaml.safe_load(result.stdout)
    assert report["valid"] is False
    assert [error["path"] for error in report["errors"]] == ["tasks[0].params.seconds"]


def test_output_rejects_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "etl.yaml"
    path.write_text(SPEC)
    result = CliRunner().invoke(app, ["workflow", "validate", str(path), "-o", "xml"])
    assert result.exit_code == 2
