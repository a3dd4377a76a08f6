"""Load test: a team's traffic (Locust) against the distributed shape on this machine.

    .venv/bin/python bench/load/run.py                    (60 s, 10 users)
    LOAD_DURATION=1800 LOAD_USERS=40 .venv/bin/python bench/load/run.py     (a soak: not in CI)

It starts everything on private ports and stops it at the end:

- a Redis of its own (``redis-server`` on a free port, nothing saved), the database
  ``armillary_load`` on the PostgreSQL at 127.0.0.1:5432 (dropped and created afresh), and a
  RabbitMQ virtual host of its own on the broker at 127.0.0.1:5672 (deleted at the end);
- ``armillary up --distributed`` on free ports: the Envoy gateway, the five services, the
  scheduler and ``--workers`` workers;
- bench/load/seed.py through the gateway: accounts, a project, a model trained, registered
  and deployed by a real job, a deployment API key;
- Locust headless (bench/.venvs/load, made by bench/load/setup.sh when missing) for
  ``--duration`` seconds, with bench/load/locustfile.py;
- bench/load/slo.py over Locust's CSV: the run exits 1 when an SLO is broken.

With ``--capacity`` two more phases follow the mix on the same platform, each as long:
predictions alone (``--capacity-users`` clients asking 50/s each, more than one serving
process answers) and scientists alone (``--capacity-users`` of them). Their reports are
``load-predict.html`` and ``load-scientists.html``; only the mix's SLOs decide the exit code.

Results in bench/results/load/: Locust's ``load.html`` and ``load_stats.csv`` (and
``_failures``, ``_exceptions``, ``_stats_history``), ``summary.json`` with each phase's
requests and the CPU each process used, and the platform's logs in ``logs/``. Traffic goes to 127.0.0.1 only; Locust
runs with telemetry off (no OpenTelemetry exporter, ``DO_NOT_TRACK=1``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "bench" / "results" / "load"
VENV = REPO / "bench" / ".venvs" / "load"
LOCUST = VENV / "bin" / "locust"
DB_NAME = "armillary_load"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SERVICES = ("identity", "data", "workflows", "registry", "serving")
_TICKS = os.sysconf("SC_CLK_TCK")

sys.path.insert(0, str(HERE))
import slo  # noqa: E402


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """The caller's environment without settings that could leak into the run."""
    drop = ("ARMILLARY_", "OTEL_", "LOCUST_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def ensure_locust() -> None:
    if not LOCUST.exists():
        subprocess.run(["bash", str(HERE / "setup.sh")], check=True)


# --- the services the platform stands on ----------------------------------------------------


async def _recreate_database() -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()


@contextmanager
def private_redis(logs: Path) -> Iterator[str]:
    port = free_port()
    with (logs / "redis.log").open("wb") as out:
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(
            [*argv, "--save", "", "--appendonly", "no"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("redis-server did not start; see logs/redis.log") from None
                time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    name = f"armillary-load-{secrets.token_hex(4)}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)

    ctl("add_vhost", name)
    ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        ctl("delete_vhost", name)


# --- the platform ---------------------------------------------------------------------------


@contextmanager
def distributed_shape(
    home: Path, logs: Path, redis_url: str, rabbitmq_url: str, workers: int
) -> Iterator[tuple[str, subprocess.Popen[bytes], dict[str, str]]]:
    port = free_port()
    password = secrets.token_urlsafe(18)
    env = clean_env()
    env.update(
        {f"ARMILLARY_{s.upper()}_URL": f"http://127.0.0.1:{free_port()}" for s in SERVICES},
        ARMILLARY_HOME=str(home),
        ARMILLARY_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{DB_NAME}",
        ARMILLARY_REDIS_URL=redis_url,
        ARMILLARY_RABBITMQ_URL=rabbitmq_url,
        ARMILLARY_SECRET_KEY=secrets.token_urlsafe(48),
        ARMILLARY_ADMIN_EMAIL="admin@example.com",
        ARMILLARY_ADMIN_PASSWORD=password,
        ARMILLARY_GATEWAY_ADMIN_PORT=str(free_port()),
        ARMILLARY_GATEWAY_STATS_PORT=str(free_port()),
        # Every simulated person signs in from 127.0.0.1: the per-address sign-in limit
        # (20/minute) stands for one person's machine, not a whole team behind one address.
        ARMILLARY_RATE_LIMIT_AUTH=os.environ.get("LOAD_RATE_LIMIT_AUTH", "3000/minute"),
        ARMILLARY_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    argv = [sys.executable, "-m", "armillary.cli", "up", "--distributed"]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with (logs / "up.log").open("wb") as out:
        process = subprocess.Popen(
            argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO)
        )
    try:
        yield f"http://127.0.0.1:{port}", process, env
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def children_cpu(parent: int) -> dict[str, float]:
    """CPU seconds (user + system, with reaped children: a worker's sandboxed tasks) of each
    process ``armillary up`` supervises, by its role."""
    found: dict[str, float] = {}
    workers = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) != parent:
            continue
        seconds = sum(int(v) for v in fields[11:15]) / _TICKS
        words = [a.decode(errors="replace") for a in argv if a]
        if "serve" in words:
            role = words[words.index("serve") + 1]
        elif "worker" in words:
            workers += 1
            role = f"worker-{workers}"
        elif "scheduler" in words:
            role = "scheduler"
        else:
            role = "gateway"  # `armillary gateway` execs Envoy
        found[role] = found.get(role, 0.0) + seconds
    return found


def machine_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICKS


# --- the run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One Locust run against the seeded platform: ``mix`` is the team's scenario whose SLOs
    decide the exit code; the capacity phases drive one kind of traffic alone."""

    name: str
    classes: tuple[str, ...]
    users: int
    predict_rate: float


def phases(args: argparse.Namespace) -> list[Phase]:
    found = [Phase("mix", tuple(args.classes), args.users, args.predict_rate)]
    if args.capacity:
        # Predictions alone, more asked for than one serving process can answer; then the
        # scientists alone, many more of them than in the mix.
        found.append(Phase("predict", ("ModelClient",), args.capacity_users, 50.0))
        found.append(Phase("scientists", ("Scientist",), args.capacity_users, args.predict_rate))
    return found


def run_locust(
    args: argparse.Namespace, phase: Phase, url: str, fixture: Path, prefix: Path
) -> None:
    env = clean_env()
    env.update(
        LOAD_FIXTURE=str(fixture),
        LOAD_PREDICT_RATE=str(phase.predict_rate),
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
    )
    argv = [str(LOCUST), "-f", str(HERE / "locustfile.py"), "--headless"]
    argv += ["--host", url, "-u", str(phase.users), "-r", str(args.spawn_rate)]
    argv += ["-t", f"{args.duration}s", "--stop-timeout", "10", "--only-summary"]
    argv += ["--csv", str(prefix), "--csv-full-history", "--html", f"{prefix}.html"]
    argv += ["--exit-code-on-error", "0", *phase.classes]
    subprocess.run(argv, env=env, check=True, timeout=args.duration + 180)


def measure(
    args: argparse.Namespace, phase: Phase, url: str, up: subprocess.Popen[bytes], fixture: Path
) -> dict[str, Any]:
    """Run one phase; its requests (from Locust's CSV) and the CPU each process used."""
    prefix = RESULTS / ("load" if phase.name == "mix" else f"load-{phase.name}")
    print(f"phase {phase.name}: {phase.users} users for {args.duration} s", flush=True)
    cpu_before, busy_before = children_cpu(up.pid), machine_busy_seconds()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    run_locust(args, phase, url, fixture, prefix)
    wall = time.monotonic() - began
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after, busy_after = children_cpu(up.pid), machine_busy_seconds()
    if up.poll() is not None:
        raise SystemExit("armillary up exited during the run; see logs/up.log")
    rows = slo.read_stats(Path(f"{prefix}_stats.csv"))
    locust_cpu = (usage_after.ru_utime + usage_after.ru_stime) - (
        usage_before.ru_utime + usage_before.ru_stime
    )
    return {
        "users": phase.users,
        "classes": list(phase.classes) or ["Scientist", "ModelClient"],
        "predict_rate_per_client": phase.predict_rate,
        "wall_s": round(wall, 1),
        "report": f"{prefix}.html",
        "requests": {
            name: {
                "count": row.requests,
                "failures": row.failures,
                "per_s": round(row.requests / wall, 2),
                "p50_ms": row.p50,
                "p95_ms": row.p95,
                "p99_ms": row.p99,
            }
            for name, row in rows.items()
        },
        "cpu_s": {
            role: round(cpu_after.get(role, 0.0) - cpu_before.get(role, 0.0), 2)
            for role in sorted(cpu_after)
        },
        "locust_cpu_s": round(locust_cpu, 2),
        "machine_busy_cpu_s": round(busy_after - busy_before, 1),
        "load_average_after": os.getloadavg()[0],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=int(os.environ.get("LOAD_DURATION", 60)))
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOAD_USERS", 10)))
    parser.add_argument("--spawn-rate", type=float, default=5.0)
    parser.add_argument(
        "--predict-rate",
        type=float,
        default=float(os.environ.get("LOAD_PREDICT_RATE", 4)),
        help="predictions per second per ModelClient user",
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("LOAD_WORKERS", 1)))
    parser.add_argument(
        "--classes",
        nargs="*",
        default=[],
        help="only these user classes (Scientist, ModelClient); default both",
    )
    parser.add_argument(
        "--capacity",
        action="store_true",
        help="after the mix, a phase of predictions alone and one of scientists alone",
    )
    parser.add_argument("--capacity-users", type=int, default=30)
    parser.add_argument("--slo", type=Path, help="thresholds as JSON (default: slo.py's)")
    args = parser.parse_args()

    ensure_locust()
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = RESULTS / "logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    asyncio.run(_recreate_database())
    work = Path(tempfile.mkdtemp(prefix="armillary-load-"))
    results: dict[str, Any] = {}
    try:
        with (
            private_redis(logs) as redis_url,
            rabbitmq_vhost() as rabbitmq_url,
            distributed_shape(
                work / "home", logs, redis_url, rabbitmq_url, args.workers
            ) as started,
        ):
            url, up, env = started
            fixture = work / "fixture.json"
            began = time.monotonic()
            subprocess.run(
                [sys.executable, str(HERE / "seed.py"), "--url", url, "--to", str(fixture)],
                env={**env, "PYTHONPATH": str(REPO / "src")},
                check=True,
            )
            print(f"seeded in {time.monotonic() - began:.0f} s", flush=True)
            for phase in phases(args):
                results[phase.name] = measure(args, phase, url, up, fixture)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    broken = slo.violations(slo.read_stats(RESULTS / "load_stats.csv"), slo.load_slo(args.slo))
    summary = {
        "duration_s": args.duration,
        "workers": args.workers,
        "machine_cores": os.cpu_count(),
        "phases": results,
        "slo_broken": broken,
    }
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    for line in broken:
        print(f"SLO broken: {line}")
    print("SLOs met" if not broken else f"{len(broken)} SLO(s) broken")
    print(f"report: {RESULTS / 'load.html'}, {RESULTS / 'load_stats.csv'}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
