"""The Armillary side of the workflow benchmark, through its HTTP API.

    .venv/bin/python bench/workflows/armillary_graphs.py --db sqlite|postgres \
        [--graphs chain,fanout,chain-python] [--reps 3] [--warmup 1] [--workers 2] [--in-process]

Starts the platform the way `make run` does, in its own process on a free loopback port, with
a temporary ``ARMILLARY_HOME``: ``armillary db upgrade``, then ``armillary up --workers N``.

  sqlite    the embedded default: SQLite under ARMILLARY_HOME, no Redis.
  postgres  ``ARMILLARY_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/
            armillary_bench_workflows`` (or ``$BENCH_WORKFLOWS_DB``); that database is dropped
            and recreated each run (and dropped at the end). No Redis either, so only the database differs.

Both runs raise the API rate limits (like bench/auth_get) so the client's polling is never
refused, and use cheap argon2 settings so logging in is fast; all else is default.

The admin logs in and creates a data scientist, who logs in, creates a project and applies
two workflows of ``noop`` tasks (``params: {}``):

  bench-chain   t1 -> t2 -> ... -> t100 via ``needs``                    (100 tasks)
  bench-fanout  start -> m1..m1000 -> join (join needs all 1,000)        (1,002 tasks)
  bench-chain-python  the chain of ``python`` tasks (inline ``def main(): return {}``),
                always sandboxed: what user code costs per task (not in the default graphs)

``--in-process`` gives the ``noop`` tasks ``isolation: in_process`` (ADR 0047): they run in
the worker's process without a sandbox; ``python`` tasks stay in their sandboxes.

Each repetition starts a job (``POST /api/v1/projects/{p}/workflows/{w}/jobs``) and polls the
project's job list (limit 1, every 50 ms: a light request) until the job is terminal, then
reads the job once (``GET /api/v1/jobs/{id}``) and computes, from the server's timestamps:

  wall            job.finished_at - job.started_at
  client wall     POST sent -> terminal status seen (polling adds up to 50 ms)
  tasks/s         tasks / wall (and / client wall)
  ready->started  task.started_at - ready_at, where ready_at = the latest finished_at of its
                  needs, or job.started_at for the root

If a job is still ``queued`` after ``--start-timeout`` seconds (default 120), the run stops
with a message saying no scheduler/worker picked it up. Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
LOGS = RESULTS / "logs"
# Another name keeps two runs on one PostgreSQL (from two checkouts) from dropping each other's.
DB_NAME = os.environ.get("BENCH_WORKFLOWS_DB", "armillary_bench_workflows")
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}"
ADMIN_EMAIL = "bench-admin@armillary.dev"
SCIENTIST_EMAIL = "bench-scientist@armillary.dev"
PROJECT = "bench-workflows"
HIGH_LIMIT = "100000000/minute"
CHAIN_LENGTH = 100
FANOUT_WIDTH = 1000
TERMINAL = {"succeeded", "failed", "cancelled"}
POLL_S = 0.05


class BenchFailure(SystemExit):
    pass


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "armillary"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "from armillary.cli.main import app; app()"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PYTHON_TASK = {"type": "python", "params": {"source": "def main():\n    return {}\n"}}


def noop(in_process: bool) -> dict[str, Any]:
    """A ``noop`` task's type and params, opted out of the sandbox with ``in_process``."""
    return {"type": "noop", "params": {}, **({"isolation": "in_process"} if in_process else {})}


def chain_spec(in_process: bool = False) -> dict[str, Any]:
    tasks = [
        {"name": f"t{i}", **noop(in_process), "needs": [f"t{i - 1}"] if i > 1 else []}
        for i in range(1, CHAIN_LENGTH + 1)
    ]
    return {"name": "bench-chain", "description": "100-task no-op chain", "tasks": tasks}


def python_chain_spec(in_process: bool = False) -> dict[str, Any]:
    """The chain of ``python`` tasks: user code, always in a sandbox (``in_process`` aside)."""
    tasks = [
        {"name": f"t{i}", **PYTHON_TASK, "needs": [f"t{i - 1}"] if i > 1 else []}
        for i in range(1, CHAIN_LENGTH + 1)
    ]
    return {"name": "bench-chain-python", "description": "100-task python chain", "tasks": tasks}


def fanout_spec(in_process: bool = False) -> dict[str, Any]:
    middle = [f"m{i}" for i in range(1, FANOUT_WIDTH + 1)]
    tasks: list[dict[str, Any]] = [{"name": "start", **noop(in_process)}]
    tasks += [{"name": n, **noop(in_process), "needs": ["start"]} for n in middle]
    tasks.append({"name": "join", **noop(in_process), "needs": middle})
    return {
        "name": "bench-fanout",
        "description": "1 -> 1,000 -> 1 no-op fan-out/in",
        "tasks": tasks,
    }


SPECS = {"chain": chain_spec, "fanout": fanout_spec, "chain-python": python_chain_spec}


def _ts(value: str | None) -> float | None:
    return None if value is None else datetime.fromisoformat(value).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summarise(job: dict[str, Any], client_wall: float) -> dict[str, Any]:
    tasks = job["tasks"]
    started_job = _ts(job["started_at"])
    finished_job = _ts(job["finished_at"])
    created_job = _ts(job["created_at"])
    if job["status"] != "succeeded":
        errors = [f"{t['name']}: {t['status']} {t.get('error') or ''}" for t in tasks[:5]]
        raise BenchFailure(f"job {job['id']} ended {job['status']}: {job.get('error')}; {errors}")
    finished = {t["name"]: _ts(t["finished_at"]) for t in tasks}
    latencies, queued, durations = [], [], []
    for t in tasks:
        started = _ts(t["started_at"])
        if started is not None and finished[t["name"]] is not None:
            durations.append((finished[t["name"]] or started) - started)
        if started is None or started_job is None:
            raise BenchFailure(f"task {t['name']} of job {job['id']} has no started_at")
        needs = t["needs"] or []
        ready = max(finished[n] or 0.0 for n in needs) if needs else started_job
        latencies.append(started - ready)
        if t.get("queued_at"):
            queued.append(started - (_ts(t["queued_at"]) or started))
    assert started_job is not None
    assert finished_job is not None
    assert created_job is not None
    wall = finished_job - started_job
    n = len(tasks)
    return {
        "tasks": n,
        "wall_s": wall,
        "client_wall_s": client_wall,
        "tasks_per_s": n / wall if wall > 0 else float("inf"),
        "client_tasks_per_s": n / client_wall,
        "ready_to_started_p50_ms": percentile(latencies, 50) * 1000,
        "ready_to_started_p99_ms": percentile(latencies, 99) * 1000,
        "ready_to_started_max_ms": max(latencies) * 1000,
        "queued_to_started_p50_ms": percentile(queued, 50) * 1000 if queued else None,
        "task_started_to_finished_p50_ms": percentile(durations, 50) * 1000,
        "job_created_to_started_ms": (started_job - created_job) * 1000,
    }


class Platform:
    def __init__(self, db: str, workers: int) -> None:
        self.db = db
        self.workers = workers
        self.home = Path(tempfile.mkdtemp(prefix="armillary-bench-wf-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_password = secrets.token_urlsafe(24)
        self.scientist_password = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = LOGS / f"workflows-armillary-{db}.log"
        self.workers_flag = False

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARMILLARY_", "BENCH_"))}
        env.update(
            DO_NOT_TRACK="1",
            PYTHONUNBUFFERED="1",
            ARMILLARY_HOME=str(self.home),
            ARMILLARY_PORT=str(self.port),
            ARMILLARY_SECRET_KEY=secrets.token_urlsafe(48),
            ARMILLARY_ADMIN_EMAIL=ADMIN_EMAIL,
            ARMILLARY_ADMIN_PASSWORD=self.admin_password,
            ARMILLARY_ARGON2_TIME_COST="1",
            ARMILLARY_ARGON2_MEMORY_COST_KIB="8",
            ARMILLARY_RATE_LIMIT_READ=HIGH_LIMIT,
            ARMILLARY_RATE_LIMIT_WRITE=HIGH_LIMIT,
            ARMILLARY_RATE_LIMIT_AUTH="10000/minute",
            ARMILLARY_LOG_LEVEL="WARNING",
        )
        if self.db == "postgres":
            env["ARMILLARY_DATABASE_URL"] = PG_URL
        return env

    def _recreate_pg(self, create: bool = True) -> None:
        import asyncio

        import asyncpg

        async def go() -> None:
            conn = await asyncpg.connect(PG_ADMIN_DSN)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
                if create:
                    await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
            finally:
                await conn.close()

        asyncio.run(go())

    def __enter__(self) -> Platform:
        LOGS.mkdir(parents=True, exist_ok=True)
        if self.db == "postgres":
            self._recreate_pg()
        env = self.env()
        migrated = subprocess.run(
            [*_cli(), "db", "upgrade"], env=env, capture_output=True, text=True, timeout=300
        )
        if migrated.returncode != 0:
            raise BenchFailure(f"armillary db upgrade failed:\n{migrated.stdout}{migrated.stderr}")
        helptext = subprocess.run(
            [*_cli(), "up", "--help"], env=env, capture_output=True, text=True, timeout=60
        ).stdout
        self.workers_flag = "--workers" in helptext
        cmd = [*_cli(), "up"]
        if self.workers_flag:
            cmd += ["--workers", str(self.workers)]
        else:
            print(
                "armillary up has no --workers option yet: starting it without; jobs will only "
                "run if the embedded process runs them itself",
                file=sys.stderr,
                flush=True,
            )
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise BenchFailure(f"armillary up exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise BenchFailure(f"armillary up did not become healthy in 90 s; see {self.log_path}")

    def __exit__(self, *_exc: object) -> None:
        self.stop()
        shutil.rmtree(self.home, ignore_errors=True)
        if self.db == "postgres":
            try:
                self._recreate_pg(create=False)
            except Exception as exc:  # report, do not hide the run's own error
                print(f"dropping {DB_NAME}: {exc}", file=sys.stderr)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        # The platform may have started scheduler/worker children in its session: signal the
        # process group we created (start_new_session), i.e. only what we started.
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _ok(response: httpx.Response, expected: set[int], what: str) -> Any:
    if response.status_code not in expected:
        raise BenchFailure(f"{what}: HTTP {response.status_code}: {response.text[:2000]}")
    return response.json() if response.content else None


def seed(client: httpx.Client, platform: Platform) -> dict[str, str]:
    admin = _ok(
        client.post(
            "/api/v1/auth/token",
            data={"username": ADMIN_EMAIL, "password": platform.admin_password},
        ),
        {200},
        "admin login",
    )
    _ok(
        client.post(
            "/api/v1/users",
            json={
                "email": SCIENTIST_EMAIL,
                "name": "Bench Scientist",
                "role": "data_scientist",
                "password": platform.scientist_password,
            },
            headers={"Authorization": f"Bearer {admin['access_token']}"},
        ),
        {201},
        "create user",
    )
    tokens = _ok(
        client.post(
            "/api/v1/auth/token",
            data={"username": SCIENTIST_EMAIL, "password": platform.scientist_password},
        ),
        {200},
        "login",
    )
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    _ok(
        client.post(
            "/api/v1/projects",
            json={"slug": PROJECT, "name": "Workflow benchmark"},
            headers=headers,
        ),
        {201},
        "create project",
    )
    return headers


def run_job(
    client: httpx.Client,
    headers: dict[str, str],
    workflow: str,
    start_timeout: float,
    job_timeout: float,
) -> dict[str, Any]:
    t0 = time.time()
    created = _ok(
        client.post(
            f"/api/v1/projects/{PROJECT}/workflows/{workflow}/jobs",
            json={"parameters": {}},
            headers=headers,
        ),
        {201},
        f"start a job of {workflow}",
    )
    job_id = created["id"]
    status = created["status"]
    began = time.monotonic()
    while status not in TERMINAL:
        waited = time.monotonic() - began
        if status == "queued" and waited > start_timeout:
            raise BenchFailure(
                f"job {job_id} of {workflow} is still 'queued' after {start_timeout:.0f} s: "
                "nothing picked it up. The scheduler/worker processes of "
                "`armillary up --workers N` are not running (or not built yet); see "
                f"the platform log for details."
            )
        if waited > job_timeout:
            raise BenchFailure(
                f"job {job_id} of {workflow} did not finish within {job_timeout:.0f} s "
                f"(status {status!r})"
            )
        time.sleep(POLL_S)
        page = _ok(
            client.get(
                f"/api/v1/projects/{PROJECT}/jobs",
                params={"workflow": workflow, "limit": 1},
                headers=headers,
            ),
            {200},
            "poll jobs",
        )
        items = page["items"]
        if items and items[0]["id"] == job_id:
            status = items[0]["status"]
        else:  # another job is newer (should not happen): read ours directly
            status = _ok(client.get(f"/api/v1/jobs/{job_id}", headers=headers), {200}, "job")[
                "status"
            ]
    client_wall = time.time() - t0
    job = _ok(client.get(f"/api/v1/jobs/{job_id}", headers=headers), {200}, "read job")
    return summarise(job, client_wall)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", choices=["sqlite", "postgres"], required=True)
    parser.add_argument("--graphs", default="chain,fanout")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--job-timeout", type=float, default=600.0)
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="noop tasks run in the worker's process, without a sandbox (ADR 0047)",
    )
    args = parser.parse_args()

    results: dict[str, list[dict[str, Any]]] = {}
    with (
        Platform(args.db, args.workers) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as client,
    ):
        headers = seed(client, platform)
        graphs = [g for g in args.graphs.split(",") if g]
        for graph in graphs:
            spec = SPECS[graph](args.in_process)
            _ok(
                client.post(f"/api/v1/projects/{PROJECT}/workflows", json=spec, headers=headers),
                {200, 201},
                f"apply {spec['name']}",
            )
        for graph in graphs:
            name = SPECS[graph]()["name"]
            runs = []
            for i in range(args.warmup + args.reps):
                summary = run_job(client, headers, name, args.start_timeout, args.job_timeout)
                summary["warmup"] = i < args.warmup
                runs.append(summary)
                print(
                    f"armillary {args.db}{' in-process' if args.in_process else ''} "
                    f"{graph} run {i}: {summary['wall_s']:.2f}s "
                    f"{summary['tasks_per_s']:.1f} tasks/s (client {summary['client_wall_s']:.2f}s)",
                    file=sys.stderr,
                    flush=True,
                )
            results[graph] = runs
        workers_flag = platform.workers_flag

    print(
        json.dumps(
            {
                "contender": f"armillary-{args.db}{'-inproc' if args.in_process else ''}",
                "graphs": results,
                "workers_flag": workers_flag,
                "command": f"armillary up{' --workers ' + str(args.workers) if workers_flag else ''}",
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
