"""MLflow's client side of the tracking benchmark; runs in MLflow's peer environment, against
whatever MLFLOW_TRACKING_URI (and MLFLOW_TRACKING_TOKEN) name.

    python client.py batch POINTS BATCH_SIZE     MlflowClient.log_batch, BATCH_SIZE points a call
    python client.py point POINTS                mlflow.log_metric, one point a call

Points go to ten metric keys, ten a step (step 0: m0..m9, step 1: ...). Only the logging calls
are timed: the run is created before, the metrics are built before, and one small call warms
the connection. Afterwards every key's history is read back and must hold every step, so a
server that drops points fails the run. Prints one JSON object."""

from __future__ import annotations

import json
import math
import sys
import time
import uuid

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
from report import call_costs_us, throughput

KEYS = [f"m{i}" for i in range(10)]
BASE_MS = 1_700_000_000_000


def points(n: int) -> list[Metric]:
    out = []
    for i in range(n):
        step, k = divmod(i, len(KEYS))
        out.append(Metric(KEYS[k], math.sin(i / 100), BASE_MS + i, step))
    return out


def check(client: MlflowClient, run_id: str, n: int) -> None:
    steps = n // len(KEYS)
    for key in KEYS:
        history = client.get_metric_history(run_id, key)
        got = sorted(m.step for m in history)
        if got != list(range(steps)):
            raise SystemExit(f"{key}: {len(got)} points read back, {steps} logged")


def batch(n: int, size: int) -> dict[str, object]:
    client = MlflowClient()
    experiment = client.create_experiment(f"bench-batch-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment, run_name="batch").info.run_id
    metrics = points(n)
    client.log_batch(run_id, metrics=[Metric("warmup", 0.0, BASE_MS, 0)])
    started = time.perf_counter()
    for start in range(0, n, size):
        client.log_batch(run_id, metrics=metrics[start : start + size])
    seconds = time.perf_counter() - started
    client.set_terminated(run_id)
    check(client, run_id, n)
    return {**throughput(n, seconds), "batch_size": size, "calls": math.ceil(n / size)}


def point(n: int) -> dict[str, object]:
    mlflow.set_experiment(f"bench-point-{uuid.uuid4().hex[:8]}")
    metrics = points(n)
    timings: list[int] = []
    with mlflow.start_run(run_name="point") as run:
        mlflow.log_metric("warmup", 0.0, step=0)
        clock = time.perf_counter_ns
        started = time.perf_counter()
        for m in metrics:
            t0 = clock()
            mlflow.log_metric(m.key, m.value, step=m.step, timestamp=m.timestamp)
            timings.append(clock() - t0)
        seconds = time.perf_counter() - started
    check(MlflowClient(), run.info.run_id, n)
    return {**throughput(n, seconds), "per_call": call_costs_us(timings)}


def main() -> None:
    mode, n = sys.argv[1], int(sys.argv[2])
    if n <= 0 or n % len(KEYS):
        raise SystemExit(f"POINTS must be a positive multiple of {len(KEYS)}")
    result = batch(n, int(sys.argv[3])) if mode == "batch" else point(n)
    print(json.dumps({"mode": mode, "mlflow": mlflow.__version__, **result}))


if __name__ == "__main__":
    main()
