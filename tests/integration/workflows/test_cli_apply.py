"""``armillary workflow apply`` against the platform on a loopback port."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.sdk.test_sdk_datasets import StartServer, provision, start_server
from typer.testing import CliRunner

from armillary.cli.main import app

__all__ = ["start_server"]  # a fixture, used by name

SPEC = """\
name: hello
tasks:
  - name: say
    type: python
    params:
      source: |
        def main():
            return {"greeting": "hi"}
    outputs: [greeting]
"""


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config"
    monkeypatch.setenv("ARMILLARY_CONFIG_DIR", str(path))
    monkeypatch.delenv("ARMILLARY_URL", raising=False)
    monkeypatch.delenv("ARMILLARY_TOKEN", raising=False)
    return path


def test_apply_creates_then_keeps_the_version(start_server: StartServer, tmp_path: Path) -> None:
    account = provision(start_server())
    env = {"ARMILLARY_URL": account.url, "ARMILLARY_TOKEN": account.token, "COLUMNS": "200"}
    path = tmp_path / "hello.yaml"
    path.write_text(SPEC)
    runner = CliRunner()
    args = ["workflow", "apply", str(path), "--project", account.project]

    first = runner.invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    assert "Applied hello: version 1" in first.stdout
    again = runner.invoke(app, args, env=env)
    assert again.exit_code == 0, again.output
    assert "hello unchanged: version 1" in again.stdout
    path.write_text(SPEC.replace("hi", "hello"))
    changed = runner.invoke(app, args, env=env)
    assert "Applied hello: version 2" in changed.stdout

    path.write_text(SPEC.replace("type: python", "type: teleport"))
    invalid = runner.invoke(app, args, env=env)
    assert invalid.exit_code == 1
    assert "tasks[0].type" in invalid.stderr
    assert "(unknown_task_type)" in invalid.stderr

    elsewhere = runner.invoke(app, ["workflow", "apply", str(path), "-p", "nope"], env=env)
    assert elsewhere.exit_code == 1
    assert "404" in elsewhere.output
