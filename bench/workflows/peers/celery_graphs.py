"""The Celery peer of the workflow benchmark; runs in bench/.venvs/celery, not in .venv.

    bench/.venvs/celery/bin/python bench/workflows/peers/celery_graphs.py \
        [--graphs chain,fanout] [--reps 3] [--warmup 1] [--vhost armillary_bench_workflows]

Broker: the machine's RabbitMQ, ``amqp://guest:guest@127.0.0.1:5672/<vhost>``. The vhost is
created (and deleted at the end) with ``rabbitmqctl`` when it is available; otherwise the
default vhost ``/`` is used with a dedicated queue, purged at the end. Result backend: Redis
database 13 on 127.0.0.1 (needed for the chord's join), flushed before and after.

The worker is started here as a subprocess, ``celery worker --pool prefork --concurrency 2``
(the machine has 2 cores), Celery's defaults otherwise (prefetch multiplier 4, acks on
success), gossip, mingle and heartbeats off (they only talk to other workers).

Graphs (no-op tasks, immutable signatures so no result is passed along):
  chain   ``chain(noop.si('t1'), ..., noop.si('t100'))``                  (100 tasks)
  fanout  ``chain(noop.si('start'), chord(group(noop.si('m1'..'m1000')), noop.si('join')))``
                                                                          (1,002 tasks)

Each task returns ``(name, started, finished)`` from ``time.time()``; task ids are set by
the client, so every task's result is read back from Redis once the run is over (untimed).
Ready = the latest ``finished`` of its upstream tasks, or the moment before ``apply_async``
for the root. Wall = ``apply_async`` until the last task's result is in the client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery, chain, chord, group

QUEUE = "armillary_bench_workflows"
REDIS_URL = "redis://127.0.0.1:6379/13"
CHAIN_LENGTH = 100
FANOUT_WIDTH = 1000
HERE = Path(__file__).resolve().parent


def broker_url(vhost: str) -> str:
    return f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


app = Celery("celery_graphs")
app.conf.update(
    broker_url=broker_url(os.environ.get("BENCH_CELERY_VHOST", "")),
    result_backend=REDIS_URL,
    task_default_queue=QUEUE,
    result_expires=3600,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="bench.noop")
def noop(name: str) -> tuple[str, float, float]:
    started = time.time()
    return name, started, time.time()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def _sig(name: str, ids: dict[str, str]) -> Any:
    ids[name] = str(uuid.uuid4())
    return noop.si(name).set(task_id=ids[name])


def build(graph: str) -> tuple[Any, dict[str, str], dict[str, list[str]]]:
    ids: dict[str, str] = {}
    if graph == "chain":
        names = [f"t{i}" for i in range(1, CHAIN_LENGTH + 1)]
        canvas = chain(*(_sig(n, ids) for n in names))
        needs = {n: ([names[i - 1]] if i else []) for i, n in enumerate(names)}
        return canvas, ids, needs
    middle = [f"m{i}" for i in range(1, FANOUT_WIDTH + 1)]
    start = _sig("start", ids)
    body = group(*(_sig(n, ids) for n in middle))
    join = _sig("join", ids)
    canvas = chain(start, chord(body, join))
    needs: dict[str, list[str]] = {"start": [], "join": middle}
    needs.update({n: ["start"] for n in middle})
    return canvas, ids, needs


def run_once(graph: str) -> dict[str, Any]:
    canvas, ids, needs = build(graph)
    t0 = time.time()
    result = canvas.apply_async()
    result.get(timeout=600, propagate=True, interval=0.005)
    wall = time.time() - t0
    times: dict[str, tuple[float, float]] = {}
    for name, task_id in ids.items():
        got = app.AsyncResult(task_id).get(timeout=60)
        times[name] = (got[1], got[2])
    latencies = []
    for name, (started, _finished) in times.items():
        upstream = needs[name]
        ready = max(times[u][1] for u in upstream) if upstream else t0
        latencies.append(started - ready)
    n = len(times)
    return {
        "tasks": n,
        "wall_s": wall,
        "tasks_per_s": n / wall,
        "ready_to_started_p50_ms": percentile(latencies, 50) * 1000,
        "ready_to_started_p99_ms": percentile(latencies, 99) * 1000,
        "ready_to_started_max_ms": max(latencies) * 1000,
    }


def _rabbitmqctl(*args: str) -> bool:
    tool = shutil.which("rabbitmqctl")
    if tool is None:
        return False
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False, timeout=60)
    return done.returncode == 0


def _flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--graphs", default="chain,fanout")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--vhost", default="armillary_bench_workflows")
    parser.add_argument("--log", default=None, help="worker log file")
    args = parser.parse_args()

    vhost = ""
    own_vhost = False
    if _rabbitmqctl("add_vhost", args.vhost) or _rabbitmqctl("list_permissions", "-p", args.vhost):
        own_vhost = _rabbitmqctl("set_permissions", "-p", args.vhost, "guest", ".*", ".*", ".*")
        vhost = args.vhost if own_vhost else ""
    app.conf.broker_url = broker_url(vhost)
    _flush_redis()

    env = {**os.environ, "BENCH_CELERY_VHOST": vhost, "PYTHONPATH": str(HERE)}
    log_path = Path(args.log) if args.log else Path(os.devnull)
    log = log_path.open("wb")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_graphs",
            "worker",
            "--pool",
            "prefork",
            "--concurrency",
            "2",
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "WARNING",
            "-n",
            f"bench-{os.getpid()}@localhost",
        ],
        cwd=HERE,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        # Ready when a ping task round-trips.
        deadline = time.monotonic() + 60
        while True:
            if worker.poll() is not None:
                raise SystemExit(f"celery worker exited with {worker.returncode}; see {log_path}")
            try:
                noop.si("ping").apply_async().get(timeout=2)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise SystemExit("celery worker did not answer within 60 s") from None
        for graph in [g for g in args.graphs.split(",") if g]:
            runs = []
            for i in range(args.warmup + args.reps):
                summary = run_once(graph)
                summary["warmup"] = i < args.warmup
                runs.append(summary)
                print(
                    f"celery {graph} run {i}: {summary['wall_s']:.2f}s "
                    f"{summary['tasks_per_s']:.1f} tasks/s",
                    file=sys.stderr,
                    flush=True,
                )
            results[graph] = runs
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        try:
            with app.connection_for_write() as conn:
                conn.default_channel.queue_purge(QUEUE)
        except Exception as exc:  # the queue may be gone with the vhost; report, don't fail
            print(f"purge of {QUEUE}: {exc}", file=sys.stderr)
        if own_vhost:
            _rabbitmqctl("delete_vhost", args.vhost)
        _flush_redis()

    import celery
    import kombu

    print(
        json.dumps(
            {
                "contender": "celery",
                "graphs": results,
                "broker": f"RabbitMQ, vhost {vhost or '/'}",
                "versions": {"celery": celery.__version__, "kombu": kombu.__version__},
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
