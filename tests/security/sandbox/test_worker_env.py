"""F16: workers started by `armillary up` get only the environment they use."""

from __future__ import annotations

from pathlib import Path

import pytest

from armillary.cli.engine import worker_env
from armillary.kit.settings import Settings


def test_a_worker_gets_only_what_it_uses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    inherited = {
        "ARMILLARY_ADMIN_PASSWORD": "correct horse battery staple",
        "GITHUB_TOKEN": "ghp_secret",
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "OPENAI_API_KEY": "sk-secret",
        "DATABASE_URL": "postgresql://other:pw@db/other",
    }
    used = {
        "ARMILLARY_DATABASE_URL": "postgresql://armillary@db/armillary",
        "ARMILLARY_WORKFLOWS_WORKER_CONCURRENCY": "2",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE",
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
    }
    for name, value in {**inherited, **used}.items():
        monkeypatch.setenv(name, value)
    env = worker_env(Settings(home=tmp_path), "0.0.0.0", 8080)  # noqa: S104
    for name in inherited:
        assert name not in env
    for name, value in used.items():
        assert env[name] == value
    assert env["ARMILLARY_HOME"] == str(tmp_path.resolve())
    assert env["ARMILLARY_WORKFLOWS_TASK_API_URL"] == "http://127.0.0.1:8080"
