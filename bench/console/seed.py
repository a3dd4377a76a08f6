"""The console benchmark's project, made through the public API of a running platform: jobs
really run by its scheduler and workers, models really uploaded.

  bench-dag    one workflow of 200 `noop` tasks in 10 layers of 20 (each task needs two of
               the layer before: 360 edges); its one job runs first and is the job page measured
  bench-etl    extract -> transform -> load (`noop`): 699 jobs, succeeded
  bench-flaky  extract -> check (`fail`) -> load: 200 jobs, failed (load: upstream_failed)
  bench-wait   one `sleep` task of an hour: 100 jobs, 90 of them cancelled, the other 10 left
               running (2, one per worker) or queued while the pages are measured

1,000 jobs in all, 2,797 task runs besides the DAG's 200. The DAG job, 3 etl, 2 flaky and 12
wait jobs (2 of them cancelled: one running, one queued) really run; the other 982 are copies
of those, written into the database (bench/console/clone.py) with their timestamps moved back
150 s apart, states shuffled. One model, `churn`, with 100 uploaded versions (the same
small ONNX classifier, five metrics that differ per version); a dataset of 2,000 rows; a
deployment with two variants; an alert channel and rule."""

from __future__ import annotations

import io
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from clone import copy_jobs

PROJECT = "bench-console"
MODEL = "churn"
DATASET = "customers"
DEPLOYMENT = "churn-api"
DAG_LAYERS = 10
DAG_WIDTH = 20
ETL_JOBS = 699
FLAKY_JOBS = 200
WAIT_JOBS = 100  # of which CANCELLED_JOBS cancelled, the rest live
CANCELLED_JOBS = 90
# Jobs that really run; the rest are copies of them (bench/console/clone.py).
REAL_ETL = 3
REAL_FLAKY = 2
REAL_WAIT = WAIT_JOBS - CANCELLED_JOBS + 2
MODEL_VERSIONS = 100
TERMINAL = {"succeeded", "failed", "cancelled"}


class SeedFailure(SystemExit):
    pass


def ok(response: httpx.Response, expected: set[int], what: str) -> Any:
    if response.status_code not in expected:
        raise SeedFailure(f"{what}: HTTP {response.status_code}: {response.text[:1000]}")
    return response.json() if response.content else None


def dag_spec() -> dict[str, Any]:
    def name(layer: int, i: int) -> str:
        return f"l{layer:02d}-t{i:02d}"

    tasks = []
    for layer in range(DAG_LAYERS):
        for i in range(DAG_WIDTH):
            needs = [name(layer - 1, i), name(layer - 1, (i + 1) % DAG_WIDTH)] if layer else []
            tasks.append({"name": name(layer, i), "type": "noop", "needs": needs})
    return {"name": "bench-dag", "description": "200 no-op tasks, 10 layers", "tasks": tasks}


def chain_spec(name: str, middle: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "tasks": [
            {"name": "extract", "type": "noop"},
            {**middle, "needs": ["extract"]},
            {"name": "load", "type": "noop", "needs": [middle["name"]]},
        ],
    }


SPECS = [
    dag_spec(),
    chain_spec("bench-etl", {"name": "transform", "type": "noop"}),
    chain_spec(
        "bench-flaky",
        {"name": "check", "type": "fail", "params": {"message": "row count below 1,000"}},
    ),
    {
        "name": "bench-wait",
        "tasks": [{"name": "wait", "type": "sleep", "params": {"seconds": 3600}}],
    },
]


@dataclass
class Seeded:
    dag_job: str
    versions: int
    seconds: dict[str, float]


def log(message: str) -> None:
    print(f"  seed: {message}", file=sys.stderr, flush=True)


class Seeder:
    def __init__(self, http: httpx.Client, headers: dict[str, str]) -> None:
        self.http = http
        self.headers = headers
        self.base = f"/api/v1/projects/{PROJECT}"

    def post(self, path: str, what: str, expected: set[int] | None = None, **kw: Any) -> Any:
        response = self.http.post(self.base + path, headers=self.headers, **kw)
        return ok(response, expected or {200, 201}, what)

    def get(self, path: str, **params: Any) -> Any:
        return ok(self.http.get(self.base + path, params=params, headers=self.headers), {200}, path)

    def start(self, workflow: str) -> str:
        made = self.post(
            f"/workflows/{workflow}/jobs", f"start {workflow}", json={"parameters": {}}
        )
        return str(made["id"])

    def wait_until_done(self, workflow: str, expected: int, timeout_s: float) -> None:
        """Until every job of ``workflow`` has ended (the list's total by terminal status)."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = sum(
                self.get("/jobs", workflow=workflow, status=state, limit=1)["total"]
                for state in TERMINAL
            )
            if done >= expected:
                return
            if time.monotonic() > deadline:
                raise SeedFailure(f"{workflow}: {done} of {expected} jobs ended in {timeout_s} s")
            time.sleep(1.0)

    def jobs(self, dsn: str) -> tuple[str, dict[str, float]]:
        seconds: dict[str, float] = {}
        for spec in SPECS:
            self.post("/workflows", f"apply {spec['name']}", json=spec)
        began = time.monotonic()
        dag_job = self.start("bench-dag")
        self.wait_until_done("bench-dag", 1, 1200)
        seconds["dag_job"] = time.monotonic() - began
        log(f"200-task DAG job ran in {seconds['dag_job']:.1f} s")
        began = time.monotonic()
        templates = {
            "bench-etl": [self.start("bench-etl") for _ in range(REAL_ETL)],
            "bench-flaky": [self.start("bench-flaky") for _ in range(REAL_FLAKY)],
        }
        self.wait_until_done("bench-etl", REAL_ETL, 600)
        self.wait_until_done("bench-flaky", REAL_FLAKY, 600)
        waits = [self.start("bench-wait") for _ in range(REAL_WAIT)]
        deadline = time.monotonic() + 300
        while self.get("/jobs", workflow="bench-wait", status="running", limit=1)["total"] < 1:
            if time.monotonic() > deadline:
                raise SeedFailure("no bench-wait job started running in 300 s")
            time.sleep(0.5)
        # One cancelled while running, one while queued; the others stay live.
        for job_id in (waits[0], waits[-1]):
            ok(
                self.http.post(f"/api/v1/jobs/{job_id}/cancel", headers=self.headers),
                {200},
                "cancel",
            )
        self.wait_until_done("bench-wait", 2, 300)
        templates["cancelled"] = [waits[0], waits[-1]]
        seconds["real_jobs"] = time.monotonic() - began
        began = time.monotonic()
        copies = {
            "bench-etl": ETL_JOBS - REAL_ETL,
            "bench-flaky": FLAKY_JOBS - REAL_FLAKY,
            "cancelled": CANCELLED_JOBS - 2,
        }
        kinds = [kind for kind, n in copies.items() for _ in range(n)]
        random.Random(19).shuffle(kinds)  # a history with the states mixed
        used = dict.fromkeys(copies, 0)
        plan = []
        for i, kind in enumerate(kinds):
            choices = templates[kind]
            plan.append((choices[used[kind] % len(choices)], timedelta(seconds=150 * (i + 1))))
            used[kind] += 1
        copied = copy_jobs(dsn, plan)
        seconds["copies"] = time.monotonic() - began
        log(f"{copied} copies of real jobs written in {seconds['copies']:.1f} s")
        return dag_job, seconds

    def model(self) -> int:
        from tests.integration.serving.predict_support import SIGNATURE, model_bytes

        onnx = model_bytes("good")
        self.post("/models", "create model", json={"name": MODEL, "description": "churn scoring"})
        for n in range(1, MODEL_VERSIONS + 1):
            # Metrics that move with n but not in step, so each sort order differs.
            metrics = {
                "accuracy": round(0.80 + 0.15 * math.sin(n / 7) ** 2, 4),
                "auc": round(0.85 + 0.1 * math.cos(n / 5) ** 2, 4),
                "f1": round(0.70 + 0.002 * n, 4),
                "log_loss": round(0.5 - 0.003 * n + 0.05 * math.sin(n), 4),
                "latency_ms": round(2 + (n * 37 % 11) / 3, 3),
            }
            self.post(
                f"/models/{MODEL}/versions/upload",
                f"upload version {n}",
                expected={201},
                files={"file": ("model.onnx", onnx, "application/octet-stream")},
                data={"signature": json.dumps(SIGNATURE), "metrics": json.dumps(metrics)},
            )
        self.http.put(
            f"{self.base}/models/{MODEL}/aliases/champion",
            json={"version": MODEL_VERSIONS - 1},
            headers=self.headers,
        )
        return MODEL_VERSIONS

    def dataset(self) -> None:
        self.post("/datasets", "create dataset", json={"name": DATASET})
        rows = ["customer_id,tenure_months,plan,monthly_spend,churned"]
        plans = ("basic", "plus", "pro", "team")
        for i in range(2000):
            rows.append(f"{i},{i % 72},{plans[i % 4]},{20 + (i * 7919) % 130}.5,{int(i % 5 == 0)}")
        body = ("\n".join(rows) + "\n").encode()
        self.post(
            f"/datasets/{DATASET}/versions",
            "upload dataset",
            files={"file": ("customers.csv", io.BytesIO(body), "text/csv")},
        )

    def deployment_and_alerts(self) -> None:
        body = {
            "name": DEPLOYMENT,
            "routing": {"mode": "random"},
            "variants": [
                {"name": "champion", "model": MODEL, "alias": "champion", "weight": 9},
                {"name": "challenger", "model": MODEL, "version": MODEL_VERSIONS, "weight": 1},
            ],
        }
        self.post("/deployments", "create deployment", json=body)
        channel = self.post(
            "/alerts/channels",
            "alert channel",
            json={
                "name": "ops-hook",
                "kind": "webhook",
                "config": {
                    "url": "https://hooks.example.com/x",
                    "signing_secret": "bench-secret-0123456789",
                },
            },
        )
        self.post(
            "/alerts/rules",
            "alert rule",
            json={"name": "failures", "kind": "job_failed", "channel_ids": [channel["id"]]},
        )


def seed(http: httpx.Client, headers: dict[str, str], dsn: str) -> Seeded:
    """``dsn``: the platform's PostgreSQL database, where the job copies are written."""
    seeder = Seeder(http, headers)
    began = time.monotonic()
    dag_job, seconds = seeder.jobs(dsn)
    seeder.model()
    seeder.dataset()
    seeder.deployment_and_alerts()
    total = seeder.get("/jobs", limit=1)["total"]
    if total != 1 + ETL_JOBS + FLAKY_JOBS + WAIT_JOBS:
        raise SeedFailure(f"the project holds {total} jobs, not 1,000")
    seconds["total"] = time.monotonic() - began
    log(f"seeded in {seconds['total']:.1f} s")
    return Seeded(dag_job=dag_job, versions=MODEL_VERSIONS, seconds=seconds)
