"""The SDK's cost in a training loop: how long one ``armillary.tracking.log_metrics`` call
takes, against a real server, with the background sender running.

    ARMILLARY_URL=... ARMILLARY_TOKEN=... ARMILLARY_PROJECT=... \
        python sdk_overhead.py CALLS [WORK_US]

Each step does WORK_US microseconds of busy work (the "training", untimed; 20 by default) and
then one timed call logging one point, so the loop lasts long enough for the sender thread to
wake, encode and send batches while the loop runs: the calls pay for that thread's share of
the interpreter too. Ending the run sends what is still queued; then the metric's history is
read back and must hold every point. Prints one JSON object."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import httpx
from report import call_costs_us

from armillary import tracking
from armillary.tracking import sdk

WARMUP = 1_000


def busy(us: float) -> None:
    until = time.perf_counter() + us / 1e6
    while time.perf_counter() < until:
        pass


def read_back(run_id: str, key: str) -> int:
    """The number of points the server holds for ``key`` (MLflow's get-history, paged)."""
    url = os.environ["ARMILLARY_URL"].rstrip("/")
    api = f"{url}/mlflow/{os.environ['ARMILLARY_PROJECT']}/api/2.0/mlflow/metrics/get-history"
    headers = {"Authorization": f"Bearer {os.environ['ARMILLARY_TOKEN']}"}
    count, token = 0, None
    with httpx.Client(timeout=120) as http:
        while True:
            params: dict[str, str | int] = {
                "run_id": run_id,
                "metric_key": key,
                "max_results": 100_000,
            }
            if token:
                params["page_token"] = token
            answer = http.get(api, params=params, headers=headers)
            answer.raise_for_status()
            body = answer.json()
            count += len(body.get("metrics", []))
            token = body.get("next_page_token")
            if not token:
                return count


def main() -> None:
    calls = int(sys.argv[1])
    work_us = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    log_metrics, clock = tracking.log_metrics, time.perf_counter_ns
    timings: list[int] = []
    run = tracking.start_run("sdk-overhead", experiment="bench-sdk")
    for step in range(WARMUP):
        log_metrics({"loss": 1.0}, step=step)
    for step in range(WARMUP, WARMUP + calls):
        busy(work_us)
        value = math.exp(-step / calls)
        t0 = clock()
        log_metrics({"loss": value}, step=step)
        timings.append(clock() - t0)
    # What the loop left queued (the sender sent the rest while it ran).
    queued_at_end = len(sdk._tracker.batcher().pending)
    started = time.perf_counter()
    run.end()
    drain_s = time.perf_counter() - started
    logged = WARMUP + calls
    held = read_back(run.id, "loss")
    if held != logged:
        raise SystemExit(f"{held} points read back, {logged} logged")
    result = {
        **call_costs_us(timings),
        "work_us": work_us,
        "logged": logged,
        "read_back": held,
        "sent_during_loop": logged - queued_at_end,
        "drain_s": drain_s,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
