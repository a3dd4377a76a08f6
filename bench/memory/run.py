"""Benchmark: memory of every process Armillary runs, at rest and under the API benchmark.

    .venv/bin/python bench/memory/run.py            (make bench-memory)

Two shapes, each started the way a user starts it:

  embedded     ``armillary up --workers 2``: the API process (every service and the
               scheduler) and two local workers, on SQLite and the local object store
               under a fresh ARMILLARY_HOME, as ``make run`` starts it.
  distributed  ``armillary up --distributed --workers 2``: Envoy, one process per service,
               the scheduler and two workers, on PostgreSQL, Redis and RabbitMQ.

For each shape: wait until it answers, seed a data scientist and a project through the API,
let it settle, and read ``/proc/<pid>/smaps_rollup`` of every process in the tree: PSS
(shared pages divided among the processes that map them, so the column sums to what the
shape costs the machine) and RSS (what each process maps, shared pages counted in each).
Then the authenticated GET of bench/auth_get at c=32 with wrk for ``--load-seconds``,
sampling every second, and report each process's peak. Pre-started sandboxes start on a
worker's first task, so none exists at rest; a task would add them.

Results: bench/results/memory.md and .json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
RESULTS = BENCH / "results"


def _load(name: str, path: Path) -> ModuleType:
    """bench/ is not a package: load the auth benchmark's set-up by path."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


common: Any = _load("auth_get_common", BENCH / "auth_get" / "common.py")
# A database and Redis db of our own, so this run and the other benchmarks or the test suite
# never clear each other's data. The helpers read these at call time.
common.DB_NAME = "armillary_membench"
common.PG_BENCH_DSN = f"postgresql://postgres@127.0.0.1:5432/{common.DB_NAME}"
common.DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{common.DB_NAME}"
common.REDIS_URL = "redis://127.0.0.1:6379/9"

MIB = 1024 * 1024
SERVICES = ("identity", "data", "workflows", "training", "registry", "serving", "tracking")


# --- reading memory ------------------------------------------------------------------------


@dataclass
class Sample:
    pid: int
    role: str
    pss: int
    rss: int


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def process_tree(root: int) -> list[int]:
    pending, seen = [root], []
    while pending:
        pid = pending.pop()
        seen.append(pid)
        pending += _children(pid)
    return seen


def role_of(cmdline: list[str]) -> str:
    """A short name for a process of the tree, from its command line."""
    words = [Path(w).name if i == 0 else w for i, w in enumerate(cmdline)]
    text = " ".join(words)
    if not words:
        return "?"
    if "envoy" in words[0]:
        return "gateway (envoy)"
    if "bwrap" in text or "sandbox" in text:
        return "sandbox"
    for verb in ("serve", "worker", "scheduler", "gateway"):
        if verb in words:
            after = words[words.index(verb) + 1 :]
            name = after[0] if verb == "serve" and after else ""
            return f"{verb} {name}".strip()
    if "up" in words:
        return "armillary up"
    return words[0]


def read(pid: int) -> Sample | None:
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    values = {}
    for line in rollup.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("Pss:", "Rss:"):
            values[parts[0]] = int(parts[1]) * 1024
    words = [w.decode(errors="replace") for w in cmdline if w]
    return Sample(pid, role_of(words), values.get("Pss:", 0), values.get("Rss:", 0))


def snapshot(root: int) -> list[Sample]:
    return [s for s in (read(pid) for pid in process_tree(root)) if s is not None]


# --- running a shape -----------------------------------------------------------------------


@dataclass
class ShapeResult:
    shape: str
    at_rest: list[Sample] = field(default_factory=list)
    under_load: dict[int, Sample] = field(default_factory=dict)
    requests_per_second: float = 0.0
    non_2xx: int = 0

    def total(self, samples: list[Sample], key: str) -> int:
        return sum(getattr(s, key) for s in samples)


def _env(config: Any, shape: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARMILLARY_", "OTEL_"))}
    env.update(
        ARMILLARY_HOME=str(home),
        ARMILLARY_SECRET_KEY=config.secret_key,
        ARMILLARY_ADMIN_EMAIL=common.ADMIN_EMAIL,
        ARMILLARY_ADMIN_PASSWORD=config.admin_password,
        ARMILLARY_RATE_LIMIT_READ=common.HIGH_LIMIT,
        ARMILLARY_RATE_LIMIT_WRITE=common.HIGH_LIMIT,
        ARMILLARY_RATE_LIMIT_AUTH="10000/minute",
        ARMILLARY_LOG_LEVEL="WARNING",
        ARMILLARY_METRICS_PORT=str(common.free_port()),
        DO_NOT_TRACK="1",
    )
    if shape == "distributed":
        env.update(
            {
                f"ARMILLARY_{s.upper()}_URL": f"http://127.0.0.1:{common.free_port()}"
                for s in SERVICES
            },
            ARMILLARY_DATABASE_URL=common.DATABASE_URL,
            ARMILLARY_REDIS_URL=common.REDIS_URL,
            ARMILLARY_RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672/",
            ARMILLARY_GATEWAY_ADMIN_PORT=str(common.free_port()),
            ARMILLARY_GATEWAY_STATS_PORT=str(common.free_port()),
        )
    return env


@contextmanager
def started(shape: str, config: Any, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    home = Path(tempfile.mkdtemp(prefix=f"armillary-mem-{shape}-"))
    command = [sys.executable, "-m", "armillary.cli", "up", "--port", str(port)]
    command += ["--workers", "2"] + (["--distributed"] if shape == "distributed" else [])
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=_env(config, shape, home), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(home, ignore_errors=True)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"armillary up exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/api/v1/auth/jwks", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"armillary up never answered:\n{log.read_text()[-3000:]}")


def load(url: str, token: str, seconds: int, root: int, result: ShapeResult) -> None:
    """wrk at c=32 on the authenticated GET; every process's peak PSS while it runs."""
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            for s in snapshot(root):
                best = result.under_load.get(s.pid)
                if best is None or s.pss > best.pss:
                    result.under_load[s.pid] = s

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    done = subprocess.run(
        [
            *("wrk", "-t2", "-c32", f"-d{seconds}s"),
            *("-H", f"Authorization: Bearer {token}", f"{url}{common.PROJECT_PATH}"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    stop.set()
    sampler.join()
    for line in done.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            result.requests_per_second = float(line.split()[1])
        if "Non-2xx" in line:
            result.non_2xx = int(line.split()[-1])


def measure(shape: str, load_seconds: int, settle: float) -> ShapeResult:
    config = common.BenchConfig()
    if shape == "distributed":
        common.prepare_services(config)
    port = common.free_port()
    url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix=f"armillary-mem-{shape}-", suffix=".log")[1])
    result = ShapeResult(shape)
    with started(shape, config, port, log) as process:
        wait_ready(url, process, log)
        with httpx.Client(base_url=url, timeout=30) as client:
            seed = common.seed_sync(client, config)
        time.sleep(settle)
        result.at_rest = snapshot(process.pid)
        load(url, seed.token, load_seconds, process.pid, result)
    config.cleanup()
    return result


# --- report --------------------------------------------------------------------------------


def _rows(samples: list[Sample], title: str) -> list[str]:
    lines = [f"| {title} | PSS MiB | RSS MiB |", "|---|---:|---:|"]
    by_role: dict[str, list[Sample]] = {}
    for s in samples:
        by_role.setdefault(s.role, []).append(s)
    for role, group in sorted(by_role.items(), key=lambda kv: -sum(s.pss for s in kv[1])):
        count = f" x{len(group)}" if len(group) > 1 else ""
        pss = sum(s.pss for s in group) / MIB
        rss = sum(s.rss for s in group) / MIB
        lines.append(f"| {role}{count} | {pss:.0f} | {rss:.0f} |")
    pss = sum(s.pss for s in samples) / MIB
    rss = sum(s.rss for s in samples) / MIB
    lines.append(f"| **total** ({len(samples)} processes) | **{pss:.0f}** | {rss:.0f} |")
    return lines


def report(results: list[ShapeResult], commit: str, load_seconds: int) -> str:
    out = [
        "# Memory per process (bench/memory/run.py)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, "
        f"load average {os.getloadavg()[0]:.1f}. Under load: wrk c=32 for {load_seconds} s on "
        "the authenticated GET, peak per process.",
    ]
    for r in results:
        out += ["", f"## {r.shape}", "", *_rows(r.at_rest, "at rest")]
        out += ["", *_rows(list(r.under_load.values()), "under load (peak)")]
        out += ["", f"{r.requests_per_second:.0f} requests/s, {r.non_2xx} not 2xx."]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=("embedded", "distributed", "both"), default="both")
    parser.add_argument("--load-seconds", type=int, default=20)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before at-rest")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk (make bench-memory does)")
    shapes = ["embedded", "distributed"] if args.shape == "both" else [args.shape]
    results = [measure(shape, args.load_seconds, args.settle) for shape in shapes]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    ).stdout.strip()
    text = report(results, commit, args.load_seconds)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.md").write_text(text)
    (RESULTS / "memory.json").write_text(
        json.dumps([asdict(r) for r in results], indent=2, default=str)
    )
    print(text)


if __name__ == "__main__":
    main()
