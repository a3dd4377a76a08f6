"""Shared helpers of the dataset benchmarks: processes, CPU accounting, machine facts, the
pandas peer's virtual environment. Loopback only: nothing here talks to another host.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent.parent
RESULTS = REPO / "bench" / "results"
# The repository's own interpreter (.venv/bin/python when run as the README says).
PYTHON = sys.executable
PANDAS_VENV = REPO / "bench" / ".venvs" / "pandas"
PANDAS_PYTHON = PANDAS_VENV / "bin" / "python"
TIME_BIN = Path("/usr/bin/time")
MB = 1_000_000  # throughput is reported in decimal MB/s
MIB = 1024 * 1024
GIB = 1024 * MIB
# Telemetry off for every peer and tool we start.
QUIET_ENV = {"DO_NOT_TRACK": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without ARMILLARY_/AWS_/BENCH_ settings that could leak in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARMILLARY_", "AWS_", "BENCH_", "POLARS_"))
    }
    env.update(QUIET_ENV)
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_cpu(pid: int) -> tuple[float, float]:
    """(own, waited-for children) CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # After the ")": state is field 0, utime 11, stime 12, cutime 13, cstime 14.
    own = (int(fields[11]) + int(fields[12])) / ticks
    children = (int(fields[13]) + int(fields[14])) / ticks
    return own, children


class Service:
    """A server subprocess that we started, and stop by its own pid."""

    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        log_path: Path,
        ready: Callable[[], bool],
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.log_path = log_path
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise SystemExit(f"{self.name} exited early:\n{tail}")
            try:
                if self.ready():
                    return self
            except Exception:  # noqa: S110 - not up yet
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{self.name} did not become ready; see {self.log_path}")

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> tuple[float, float]:
        return proc_cpu(self.pid)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _run(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "?"
    return done.stdout.strip()


def machine_info() -> dict[str, str]:
    model = "?"
    for line in _run(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": _run(["nproc"]),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def versions(*modules: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in modules:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "?"
    return out


def ensure_pandas_venv() -> dict[str, str]:
    """The pandas peer lives in its own venv, outside uv.lock; made here when missing."""
    if not PANDAS_PYTHON.exists():
        print(f"creating {PANDAS_VENV} (pandas, pyarrow)", flush=True)
        PANDAS_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(PANDAS_VENV)], check=True, env=clean_env())
    probe = [
        str(PANDAS_PYTHON),
        "-c",
        "import pandas, pyarrow, numpy; print(pandas.__version__, pyarrow.__version__, numpy.__version__)",
    ]
    done = subprocess.run(probe, capture_output=True, text=True, check=False, env=clean_env())
    if done.returncode != 0:
        subprocess.run(
            [str(PANDAS_PYTHON), "-m", "pip", "install", "--quiet", "pandas", "pyarrow"],
            check=True,
            env=clean_env(),
        )
        done = subprocess.run(probe, capture_output=True, text=True, check=True, env=clean_env())
    pandas_v, pyarrow_v, numpy_v = done.stdout.split()
    return {"pandas": pandas_v, "pyarrow": pyarrow_v, "numpy (pandas venv)": numpy_v}


def max_rss_kib(time_output: str) -> int | None:
    """Peak RSS from ``/usr/bin/time -v`` output."""
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_output)
    return int(match.group(1)) if match else None
