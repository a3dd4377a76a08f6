"""Static checks of deploy/ (Helm chart, Terraform, images, compose, CI files), run by
`make deploy-check` with the checkers `scripts/deploy-tools.sh` installs into .tools/.
A missing checker fails the suite: it is never a reason to skip."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOOLS = ROOT / ".tools"


def tool(name: str) -> str:
    """The path of checker ``name``: helm in .tools/bin, the rest in .tools/venv/bin, checkov
    in .tools/checkov/bin (its HCL parser clashes with python-hcl2's, whose hcl2tojson wins)."""
    for folder in (TOOLS / "bin", TOOLS / "venv" / "bin", TOOLS / "checkov" / "bin"):
        path = folder / name
        if path.exists():
            return str(path)
    raise AssertionError(f"{name} is not installed: run `bash scripts/deploy-tools.sh`")


def run(*args: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a checker; its output is in the assertion message when it fails."""
    result = subprocess.run(
        list(args), capture_output=True, text=True, check=False, timeout=600, **kwargs
    )
    if check:
        assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result


def checkov_reports(*args: str) -> list[dict[str, Any]]:
    """checkov's JSON reports (one per framework) for ``args`` (targets and options), offline
    and quiet; it exits non-zero on findings, so the tests read the reports instead."""
    result = run(
        tool("checkov"),
        "--skip-download",
        "--compact",
        "--quiet",
        "-o",
        "json",
        *args,
        check=False,
    )
    assert result.stdout.strip(), result.stderr
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm with its homes in a temporary folder (never the user's)."""
    home = tmp_path_factory.mktemp("helm")
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
