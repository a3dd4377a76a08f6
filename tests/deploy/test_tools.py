"""The checkers the deploy suite relies on are installed and are the versions it expects:
a broken install fails here, by name, instead of as a puzzling failure in a chart test."""

from __future__ import annotations

import pytest

from tests.deploy.conftest import run, tool


def test_helm_is_version_4(helm_env: dict[str, str]) -> None:
    assert run(tool("helm"), "version", "--short", env=helm_env).stdout.startswith("v4.")


@pytest.mark.parametrize(
    "name", ["checkov", "kubernetes-validate", "yamllint", "hadolint", "actionlint"]
)
def test_checker_runs(name: str) -> None:
    result = run(tool(name), "--version")
    assert result.stdout.strip() or result.stderr.strip()
