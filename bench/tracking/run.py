"""Benchmark (issue 20): logging metrics through MLflow's own client into Armillary and into
`mlflow server`, in one run, and the cost of one `armillary.tracking.log_metrics` call.

    .venv/bin/python bench/tracking/run.py [--points 100000] [--batch 1000]
        [--point-calls 5000] [--sdk-calls 100000] [--sdk-work-us 20]     (make bench-tracking)

Servers, one at a time, each alone on its loopback port, one server process each:

  mlflow     `mlflow server --workers 1`, SQLite backend store and artifacts in a temporary
             directory, from its own virtual environment (bench/.venvs/mlflow-server: `mlflow`,
             outside uv.lock), telemetry off.
  armillary  `armillary up` on PostgreSQL (database armillary_bench_tracking, recreated and
             dropped), no workers; the data scientist's personal access token for the project
             is MLFLOW_TRACKING_TOKEN, the tracking URI `http://127.0.0.1:PORT/mlflow/<project>`.
             The rate budgets are raised (as bench/auth_get does): the benchmark measures the
             server, not the 6,000-writes-a-minute default.

Client: MLflow's own (mlflow-skinny, the version the compatibility tests pin, in the peer
environment tests/integration/tracking/mlflow_peer.py makes), the same against both servers
(bench/tracking/client.py): POINTS points with `MlflowClient.log_batch` in calls of BATCH,
then POINT_CALLS points with `mlflow.log_metric`, one synchronous call each (its per-call cost
too). Every point is read back afterwards.

SDK: bench/tracking/sdk_overhead.py in Armillary's environment against the same Armillary:
the median cost of one `log_metrics` call with the background sender running.

Results: bench/results/tracking.json and tracking.md (also printed). Targets: batched logging
>= 3x mlflow server's points/s, SDK call <= 20 us (median).
"""

from __future__ import annotations

import argparse
import json
import os
import platform as machine
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "workflows"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import armillary_graphs  # noqa: E402
import report  # noqa: E402
from armillary_graphs import (  # noqa: E402
    ADMIN_EMAIL,
    HIGH_LIMIT,
    LOGS,
    SCIENTIST_EMAIL,
    BenchFailure,
    Platform,
    _ok,
    free_port,
)
from tests.integration.tracking.mlflow_peer import NO_TELEMETRY, mlflow_python  # noqa: E402

RESULTS = REPO / "bench" / "results"
SERVER_VENV = REPO / "bench" / ".venvs" / "mlflow-server"
# The full package (the server needs it); 3.18.0's mlflow-tracing is not on the index.
SERVER_SPEC = "mlflow==3.17.2"
PROJECT = "bench-tracking"
CLIENT_TIMEOUT_S = 3600

# Platform (bench/workflows) reads these module names: this benchmark's own database.
armillary_graphs.DB_NAME = "armillary_bench_tracking"
armillary_graphs.PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{armillary_graphs.DB_NAME}"


class TrackingPlatform(Platform):
    """`armillary up` on PostgreSQL, with the tracking service's rate budget raised too."""

    def __init__(self) -> None:
        super().__init__("postgres", 0)
        self.log_path = LOGS / "tracking-armillary.log"

    def env(self) -> dict[str, str]:
        return {**super().env(), "ARMILLARY_RATE_LIMIT_TRACKING": HIGH_LIMIT}


def server_venv() -> Path:
    mlflow = SERVER_VENV / "bin" / "mlflow"
    stamp = SERVER_VENV / ".installed"
    if mlflow.exists() and stamp.exists() and stamp.read_text() == SERVER_SPEC:
        return mlflow
    shutil.rmtree(SERVER_VENV, ignore_errors=True)
    uv = shutil.which("uv")
    env = {**os.environ, **NO_TELEMETRY}
    if uv:
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(SERVER_VENV)], check=True)
        python = str(SERVER_VENV / "bin" / "python")
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", python, SERVER_SPEC], check=True, env=env
        )
    else:
        subprocess.run([sys.executable, "-m", "venv", str(SERVER_VENV)], check=True)
        pip = str(SERVER_VENV / "bin" / "pip")
        subprocess.run([pip, "install", "-q", SERVER_SPEC], check=True, env=env)
    stamp.write_text(SERVER_SPEC)
    return mlflow


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without Armillary's or a virtualenv's variables, telemetry off."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARMILLARY_", "MLFLOW_", "VIRTUAL_ENV", "PYTHONPATH"))
    }
    return {**env, **NO_TELEMETRY, **extra}


def run_json(command: list[str], env: dict[str, str], what: str) -> dict[str, Any]:
    print(f"  {what} ...", file=sys.stderr, flush=True)
    done = subprocess.run(
        command, env=env, cwd=HERE, capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S
    )
    if done.returncode != 0:
        raise BenchFailure(f"{what} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {what}: {json.dumps(result)[:300]}", file=sys.stderr, flush=True)
    return result


def mlflow_client(
    client: Path, args: argparse.Namespace, uri: str, token: str | None
) -> dict[str, Any]:
    env = clean_env(MLFLOW_TRACKING_URI=uri, MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
    if token:
        env["MLFLOW_TRACKING_TOKEN"] = token
    script = str(HERE / "client.py")
    batch = run_json(
        [str(client), script, "batch", str(args.points), str(args.batch)], env, "log_batch"
    )
    point = run_json([str(client), script, "point", str(args.point_calls)], env, "log_metric")
    return {"batch": batch, "point": point}


def against_mlflow(client: Path, mlflow: Path, args: argparse.Namespace) -> dict[str, Any]:
    print("mlflow server (SQLite)", file=sys.stderr, flush=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlflow-bench-") as tmp:
        port = free_port()
        command = [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp}/mlflow.db",
            "--artifacts-destination",
            f"{tmp}/artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.mlflow_workers),
        ]
        env = clean_env(PATH=f"{mlflow.parent}:{os.environ['PATH']}")
        with (LOGS / "tracking-mlflow.log").open("wb") as log:
            proc = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchFailure(f"mlflow server did not start; see {LOGS}")
                time.sleep(0.5)
            return mlflow_client(client, args, url, None)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def personal_token(http: httpx.Client, platform: Platform) -> str:
    """The admin makes a data scientist, who makes the project and a token for it."""

    def login(email: str, password: str) -> dict[str, str]:
        form = {"username": email, "password": password}
        tokens = _ok(http.post("/api/v1/auth/token", data=form), {200}, "login")
        return {"Authorization": f"Bearer {tokens['access_token']}"}

    admin = login(ADMIN_EMAIL, platform.admin_password)
    user = {
        "email": SCIENTIST_EMAIL,
        "name": "Bench Scientist",
        "role": "data_scientist",
        "password": platform.scientist_password,
    }
    _ok(http.post("/api/v1/users", json=user, headers=admin), {201}, "create user")
    scientist = login(SCIENTIST_EMAIL, platform.scientist_password)
    project = {"slug": PROJECT, "name": "Tracking benchmark"}
    _ok(http.post("/api/v1/projects", json=project, headers=scientist), {201}, "project")
    body = {"name": "bench", "project": PROJECT, "expires_in_days": 1}
    issued = _ok(http.post("/api/v1/auth/tokens", json=body, headers=scientist), {201}, "pat")
    return str(issued["token"])


def against_armillary(client: Path, args: argparse.Namespace) -> dict[str, Any]:
    print("armillary up (PostgreSQL)", file=sys.stderr, flush=True)
    with TrackingPlatform() as platform, httpx.Client(base_url=platform.url, timeout=60) as http:
        token = personal_token(http, platform)
        side = mlflow_client(client, args, f"{platform.url}/mlflow/{PROJECT}", token)
        sdk_env = clean_env(
            ARMILLARY_URL=platform.url,
            ARMILLARY_TOKEN=token,
            ARMILLARY_PROJECT=PROJECT,
            PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
        )
        command = [
            sys.executable,
            str(HERE / "sdk_overhead.py"),
            str(args.sdk_calls),
            str(args.sdk_work_us),
        ]
        sdk = run_json(command, sdk_env, "armillary.tracking.log_metrics")
    return {"side": side, "sdk": sdk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--point-calls", type=int, default=5_000)
    parser.add_argument("--sdk-calls", type=int, default=100_000)
    parser.add_argument("--sdk-work-us", type=float, default=20.0)
    parser.add_argument("--mlflow-workers", type=int, default=1)
    parser.add_argument("--title", default="Results")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    client = mlflow_python()
    mlflow = server_venv()
    started = datetime.now(UTC)
    theirs = against_mlflow(client, mlflow, args)
    ours = against_armillary(client, args)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": (datetime.now(UTC) - started).total_seconds(),
        "machine": {"cpus": os.cpu_count(), "python": machine.python_version()},
        "load_average": os.getloadavg(),
        "args": vars(args),
        "mlflow": theirs,
        "armillary": ours["side"],
        "sdk": ours["sdk"],
        "mlflow_server": SERVER_SPEC,
    }
    summary = report.summarise(results)
    results["summary"] = summary
    text = report.markdown(results, summary, args.title)
    (RESULTS / "tracking.json").write_text(json.dumps(results, indent=2))
    (RESULTS / "tracking.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
