"""The administration commands that used to print only a sentence give scripts their result
with ``--output json|yaml``: ``db upgrade`` (the migrations it applied), ``keys retire`` and
``service-keys create``. Run against an embedded (SQLite) home, as a fresh install is."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import TEST_SECRET
from typer.testing import CliRunner

from armillary.cli.main import app


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    for name in ("ARMILLARY_DATABASE_URL", "ARMILLARY_OUTPUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARMILLARY_HOME", str(path))
    monkeypatch.setenv("ARMILLARY_SECRET_KEY", TEST_SECRET)
    return path


def _run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    if "yaml" in args:
        return yaml.safe_load(result.stdout)
    return json.loads(result.stdout)


def test_db_upgrade_reports_the_migrations_it_applied(home: Path) -> None:
    first = _run("db", "upgrade", "--output", "json")

    assert first["target"] == "heads"
    assert len(first["applied"]) > 5
    assert all(step["revision"] and step["description"] for step in first["applied"])
    assert len({step["revision"] for step in first["applied"]}) == len(first["applied"])
    # Up to date: nothing applied, and YAML says the same.
    assert _run("db", "upgrade", "-o", "yaml") == {"target": "heads", "applied": []}

    table = CliRunner().invoke(app, ["db", "upgrade"])
    assert table.exit_code == 0, table.output
    assert table.stdout.strip() == "Database is up to date."


def test_keys_retire_names_the_retired_key(home: Path) -> None:
    _run("db", "upgrade", "-o", "json")
    leaked = _run("keys", "rotate", "--now", "-o", "json")["new_key"]
    newest = _run("keys", "rotate", "--now", "-o", "json")["new_key"]

    assert _run("keys", "retire", leaked, "-o", "json") == {"retired": leaked}
    refused = CliRunner().invoke(app, ["keys", "retire", newest, "-o", "json"])
    assert refused.exit_code == 1
    assert refused.stdout == ""  # the refusal is on stderr; stdout has no half a result


def test_service_keys_create_names_the_files(home: Path, tmp_path: Path) -> None:
    made = _run("service-keys", "create", "data", "--dir", str(tmp_path / "keys"), "-o", "yaml")

    assert made == {
        "service": "data",
        "private_key": str(tmp_path / "keys" / "data.key"),
        "public_key": str(tmp_path / "keys" / "data.pub"),
    }
    assert Path(made["private_key"]).is_file()
    assert Path(made["public_key"]).is_file()
