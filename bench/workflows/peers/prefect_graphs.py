"""The Prefect 3 peer of the workflow benchmark; runs in bench/.venvs/prefect, not in .venv.

    bench/.venvs/prefect/bin/python bench/workflows/peers/prefect_graphs.py \
        --runner thread|dask [--graphs chain,fanout] [--reps 3] [--warmup 1]

The script starts one local Prefect server for all repetitions, ``prefect server start --host
127.0.0.1`` (SQLite under ``PREFECT_HOME``, which the driver points at a fresh temporary
directory; default services; analytics and UI off), and points ``PREFECT_API_URL`` at it, so
the flow and the dask worker processes report to the same server. (Without an API URL Prefect
would start a temporary server per process: one for the flow and one per dask worker, all on
one SQLite file.) ``run.py`` sets ``DO_NOT_TRACK=1`` and ``PREFECT_SERVER_ANALYTICS_ENABLED=
false``; this script refuses to run without them, or with an API URL off loopback.

Runners:
  thread  ``ThreadPoolTaskRunner()``, Prefect's default (max_workers from settings: unbounded).
  dask    ``prefect_dask.DaskTaskRunner`` on a ``distributed.LocalCluster(processes=True,
          n_workers=2, threads_per_worker=1)`` started once before the timed runs, on
          127.0.0.1, no dashboard: tasks run in two worker processes (Prefect 3 core has no
          process-pool runner).

Graphs (no-op tasks, submitted with ``.submit(wait_for=...)`` so each goes through the
runner):
  chain   t1 -> t2 -> ... -> t100                                       (100 tasks)
  fanout  start -> m1..m1000 (parallel) -> join                         (1,002 tasks)

Each task returns ``(name, started, finished)`` from ``time.time()``; ready = the latest
``finished`` of its upstream tasks, or the flow body's start for the root. Prints one JSON
object: per repetition, the flow call's wall time (create the flow run, run it, final state),
the flow body's wall time, tasks/s and ready->started p50/p99.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

if os.environ.get("DO_NOT_TRACK", "").lower() not in ("1", "true", "yes"):
    raise SystemExit("refusing to run: set DO_NOT_TRACK=1 (no traffic may leave loopback)")
if os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "").lower() != "false":
    raise SystemExit("refusing to run: set PREFECT_SERVER_ANALYTICS_ENABLED=false")
_API_URL = os.environ.get("PREFECT_API_URL", "")
if _API_URL and not _API_URL.startswith("http://127.0.0.1:"):
    raise SystemExit("refusing to run: PREFECT_API_URL must be a server on 127.0.0.1")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server() -> subprocess.Popen[bytes]:
    """``prefect server start`` on 127.0.0.1 (SQLite under PREFECT_HOME, default services,
    analytics and UI off), and PREFECT_API_URL pointing at it, for this process and the dask
    worker processes it spawns. Without it, every dask worker process starts a temporary
    server of its own on the same SQLite file."""
    port = _free_port()
    home = Path(os.environ.get("PREFECT_HOME") or tempfile.mkdtemp(prefix="bench-prefect-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(home)
    prefect_cli = Path(sys.executable).parent / "prefect"
    with (home / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                str(prefect_cli),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--analytics-off",
                "--no-ui",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"prefect server exited with {proc.returncode}; see {home}/server.log")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    os.environ["PREFECT_API_URL"] = url
                    return proc
        except OSError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("prefect server did not answer /api/health within 120 s")


# Only the process run as a script starts the server; dask's spawned workers import this file
# as __mp_main__ and inherit PREFECT_API_URL.
SERVER = start_server() if __name__ == "__main__" and not _API_URL else None

import prefect  # noqa: E402
from prefect import flow, task  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

CHAIN_LENGTH = 100
FANOUT_WIDTH = 1000


@task(name="noop", persist_result=False)
def noop(name: str) -> tuple[str, float, float]:
    started = time.time()
    return name, started, time.time()


def _chain_body() -> tuple[float, list[tuple[str, float, float]], dict[str, list[str]]]:
    body_start = time.time()
    futures = []
    needs: dict[str, list[str]] = {}
    previous = None
    for i in range(1, CHAIN_LENGTH + 1):
        name = f"t{i}"
        future = noop.submit(name, wait_for=[previous] if previous is not None else [])
        needs[name] = [f"t{i - 1}"] if i > 1 else []
        futures.append(future)
        previous = future
    results = [f.result() for f in futures]
    return body_start, results, needs


def _fanout_body() -> tuple[float, list[tuple[str, float, float]], dict[str, list[str]]]:
    body_start = time.time()
    start = noop.submit("start")
    middle = [noop.submit(f"m{i}", wait_for=[start]) for i in range(1, FANOUT_WIDTH + 1)]
    join = noop.submit("join", wait_for=middle)
    needs = {"start": [], "join": [f"m{i}" for i in range(1, FANOUT_WIDTH + 1)]}
    needs.update({f"m{i}": ["start"] for i in range(1, FANOUT_WIDTH + 1)})
    results = [start.result(), *(f.result() for f in middle), join.result()]
    return body_start, results, needs


BODIES = {"chain": _chain_body, "fanout": _fanout_body}


def _descendants_cpu() -> float:
    """CPU seconds used so far by this process's descendants (the temporary API server, dask
    workers), from /proc."""
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    total, stack = 0.0, list(children.get(os.getpid(), []))
    while stack:
        pid = stack.pop()
        total += cpu.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def settle(max_wait: float = 60.0) -> float:
    """Waits until the server (and workers) are idle: under 5% of a core over 0.5 s. The
    temporary server records task-run events after a flow returns; without this, the next
    repetition would pay for the previous one's backlog."""
    began = time.monotonic()
    last = _descendants_cpu()
    while time.monotonic() - began < max_wait:
        time.sleep(0.5)
        now = _descendants_cpu()
        if now - last < 0.025:
            break
        last = now
    return time.monotonic() - began


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summarise(
    t0: float,
    wall: float,
    body_start: float,
    body_end: float,
    results: list[tuple[str, float, float]],
    needs: dict[str, list[str]],
) -> dict[str, Any]:
    times = {name: (started, finished) for name, started, finished in results}
    latencies = []
    for name, (started, _finished) in times.items():
        upstream = needs[name]
        ready = max(times[u][1] for u in upstream) if upstream else body_start
        latencies.append(started - ready)
    n = len(results)
    return {
        "tasks": n,
        "wall_s": wall,
        "body_s": body_end - body_start,
        "before_body_s": body_start - t0,
        "after_body_s": t0 + wall - body_end,
        "tasks_per_s": n / wall,
        "ready_to_started_p50_ms": percentile(latencies, 50) * 1000,
        "ready_to_started_p99_ms": percentile(latencies, 99) * 1000,
        "ready_to_started_max_ms": max(latencies) * 1000,
    }


def run_graph(
    runner: Any, graph: str, warmup: int, reps: int, runner_name: str
) -> list[dict[str, Any]]:
    body = BODIES[graph]
    captured: dict[str, Any] = {}

    @flow(name=f"bench-{graph}", task_runner=runner, persist_result=False, log_prints=False)
    def graph_flow() -> None:
        body_start, results, needs = body()
        captured.update(body_start=body_start, body_end=time.time(), results=results, needs=needs)

    runs = []
    for i in range(warmup + reps):
        captured.clear()
        settled = settle()
        t0 = time.time()
        graph_flow()
        wall = time.time() - t0
        summary = summarise(
            t0,
            wall,
            captured["body_start"],
            captured["body_end"],
            captured["results"],
            captured["needs"],
        )
        summary["warmup"] = i < warmup
        summary["settle_s"] = settled
        runs.append(summary)
        print(
            f"prefect {runner_name} {graph} run {i}: {summary['wall_s']:.2f}s "
            f"{summary['tasks_per_s']:.1f} tasks/s",
            file=sys.stderr,
            flush=True,
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", choices=["thread", "dask"], required=True)
    parser.add_argument("--graphs", default="chain,fanout", help="comma-separated: chain,fanout")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()

    cluster = None
    if args.runner == "dask":
        from distributed import LocalCluster
        from prefect_dask import DaskTaskRunner

        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        runner: Any = DaskTaskRunner(address=cluster.scheduler_address)
    else:
        runner = ThreadPoolTaskRunner()

    graphs = [g for g in args.graphs.split(",") if g]
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        for graph in graphs:
            results[graph] = run_graph(runner, graph, args.warmup, args.reps, args.runner)
    finally:
        if cluster is not None:
            cluster.close()
        if SERVER is not None:
            SERVER.terminate()
            try:
                SERVER.wait(timeout=30)
            except subprocess.TimeoutExpired:
                SERVER.kill()
                SERVER.wait()

    versions: dict[str, str] = {"prefect": prefect.__version__}
    if args.runner == "dask":
        import dask
        import distributed
        import prefect_dask

        versions.update(
            dask=dask.__version__,
            distributed=distributed.__version__,
            prefect_dask=getattr(prefect_dask, "__version__", "?"),
        )
    print(
        json.dumps(
            {
                "contender": f"prefect-{args.runner}",
                "graphs": results,
                "versions": versions,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
