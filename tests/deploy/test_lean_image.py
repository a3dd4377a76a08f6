"""The lean venv of the control, gateway and migrations images (ADR 0042), built
here with the Dockerfile's own `uv sync` line into a temporary environment, and run: the
control plane's code must start without the numeric and ML libraries it leaves out, and
those libraries must really be gone. The compose journey (test_containers.py) then runs the
same images end to end."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.deploy.conftest import DEPLOY, ROOT

DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
# workflows is not one: it checks a train task's hyperparameters with scikit-learn's own
# constraints when a spec is submitted.
CONTROL_SERVICES = ("identity", "tracking")
# Import names of the distributions the lean venv leaves out (a distribution's name is not
# always its module's).
MODULES = {
    "numpy": "numpy",
    "polars": "polars",
    "duckdb": "duckdb",
    "scipy": "scipy",
    "scikit-learn": "sklearn",
    "skops": "skops",
    "skl2onnx": "skl2onnx",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "ml-dtypes": "ml_dtypes",
    "joblib": "joblib",
    "lightgbm": "lightgbm",
    "xgboost-cpu": "xgboost",
}


def lean_exclude() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    (value,) = re.findall(r'ARG LEAN_EXCLUDE="([^"]+)"', text)
    return value.split()


def _uv() -> str:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        candidate = Path(sysconfig.get_path("scripts")) / "uv"
        found = str(candidate) if candidate.exists() else None
    if not found:
        pytest.fail("uv is missing: `make sync-dev` installs it")
    return found


@pytest.fixture(scope="module")
def lean_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("lean") / "venv"
    skip = [arg for name in lean_exclude() for arg in ("--no-install-package", name)]
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    command = [_uv(), "sync", "--frozen", "--no-dev", "--no-editable", "--group", "gateway"]
    done = subprocess.run(
        [*command, *skip], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return venv / "bin" / "python"


def _run(python: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ARMILLARY_", "PYTHON"))}
    return subprocess.run(
        [str(python), "-c", code],
        env={**clean, **env},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_left_out_package_is_in_the_lock() -> None:
    # A renamed distribution would otherwise stay in the lean image unnoticed.
    locked = set(re.findall(r'^name = "([^"]+)"', (ROOT / "uv.lock").read_text(), re.M))
    assert set(lean_exclude()) <= locked
    assert set(MODULES) <= set(lean_exclude())


def test_the_lean_venv_holds_none_of_the_ml_libraries(lean_python: Path) -> None:
    code = (
        "import importlib.util, json\n"
        f"print(json.dumps([m for m in {sorted(MODULES.values())!r}"
        " if importlib.util.find_spec(m)]))\n"
    )
    done = _run(lean_python, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_control_plane_starts_on_the_lean_venv(lean_python: Path) -> None:
    code = (
        "from armillary.services import service_app, routers_of\n"
        f"for name in {CONTROL_SERVICES!r}:\n"
        "    service_app(name); routers_of(name)\n"
        "import armillary.cli.main\n"
        "from armillary.gateway.routes import edge_routes\n"
        "assert edge_routes()  # the gateway reads every service's route table\n"
        "from armillary.console.process import create_console_app\n"
        "from armillary.console.settings import ConsoleSettings\n"
        "create_console_app(console_settings=ConsoleSettings(api_url='http://gateway:8000'))\n"
        "print('ok')\n"
    )
    done = _run(lean_python, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_migrations_run_on_the_lean_venv(lean_python: Path, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from armillary.cli.main import app\n"
        "sys.argv = ['armillary', 'db', 'upgrade']\n"
        "app()\n"
    )
    done = _run(lean_python, code, ARMILLARY_HOME=str(tmp_path / "home"))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Database is up to date." in done.stdout
