"""MLflow's client in a virtual environment of its own (a peer, outside uv.lock), made once
and reused: ``<repo>/.cache/peers/mlflow`` unless ARMILLARY_PEERS_DIR says where."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

# The version the compatibility was built and tested against.
MLFLOW_SPEC = "mlflow-skinny==3.18.0"
# What the peer's training scripts use beside MLflow: scikit-learn and skops at the platform's
# own versions (the platform loads the skops files they write), pandas for MLflow's sklearn
# flavour.
PEER_PACKAGES = (MLFLOW_SPEC, "scikit-learn==1.9.1", "skops==0.16.0", "pandas")
_STAMP = " ".join(PEER_PACKAGES)
REPO = Path(__file__).resolve().parents[3]
# MLflow's telemetry off in everything the peer runs.
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


class PeerUnavailable(RuntimeError):
    """The peer environment could not be made (no network, no index)."""


def _root() -> Path:
    return Path(os.environ.get("ARMILLARY_PEERS_DIR") or REPO / ".cache" / "peers") / "mlflow"


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise PeerUnavailable(f"{command[0]} failed: {(done.stderr or done.stdout)[-500:]}")


def mlflow_python() -> Path:
    """The peer's interpreter, with PEER_PACKAGES installed. Built at most once per machine
    (a lock keeps parallel test processes from building it twice)."""
    root = _root()
    python = root / "bin" / "python"
    stamp = root / ".installed"
    root.parent.mkdir(parents=True, exist_ok=True)
    with (root.parent / "mlflow.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == _STAMP and python.exists():
            return python
        shutil.rmtree(root, ignore_errors=True)
        uv = shutil.which("uv")
        env_python = sys.executable
        if uv:
            _run([uv, "venv", "-q", "--python", env_python, str(root)])
            _run([uv, "pip", "install", "-q", "--python", str(python), *PEER_PACKAGES])
        else:
            _run([env_python, "-m", "venv", str(root)])
            _run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES])
        stamp.write_text(_STAMP)
    return python
