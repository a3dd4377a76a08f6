"""Benchmark: training overhead of a platform job against the same training as a plain script.

    .venv/bin/python bench/training/run.py [--reps 3] [--trees 100,1000]     (make bench-training)

The same training, a random forest on scikit-learn's bundled digits data (1,797 rows x 64
features, 10 classes; no network), run two ways in the same run, alternating:

  plain      `python bench/training/plain.py` in a fresh process: read Parquet, stratified
             80/20 split, median imputation + standard scaling + RandomForestClassifier,
             accuracy/F1 on the hold-out rows, skops file. Wall time of the whole process.
  platform   `armillary up --workers 2` on PostgreSQL (bench/workflows/armillary_graphs.py's
             Platform), the data uploaded once as a dataset; a workflow ingest -> train with
             the same estimator, trees, seed and split; wall time from `POST .../jobs` to the
             job seen `succeeded` by the client (polling every 50 ms), plus the server's
             started -> finished. The train task also writes the signature, the environment,
             the feature importances and the rows the ONNX export is checked against, and
             reports progress. The export itself runs after registration (ADR 0018).
  platform+register  ingest -> train -> register: the registration starts the version's
             export job (ONNX conversion and parity check, after the training job). Each
             repetition waits for the version to show `onnx: ready` (and fails if it does
             not) before the next measurement, and reports when it was ready ("onnx ready",
             from `POST .../jobs`).
  platform-no-onnx  ingest -> train with `onnx: false`.

Target (issue 6): platform wall <= plain wall x 1.1 + 2 s. Results: bench/results/training.json
and a table on stdout for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
from sklearn.datasets import load_digits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "workflows"))

from armillary_graphs import PROJECT, TERMINAL, Platform, _ok, seed  # noqa: E402

from armillary.sdk import Client  # noqa: E402

RESULTS = HERE.parent / "results"
SEED = 7


def digits_parquet(directory: Path) -> Path:
    data = load_digits()
    columns = {f"p{i}": data.data[:, i].astype(np.float64) for i in range(data.data.shape[1])}
    columns["target"] = data.target.astype(np.int64)
    path = directory / "digits.parquet"
    pl.DataFrame(columns).write_parquet(path)
    return path


def plain(data: Path, trees: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                str(HERE / "plain.py"),
                str(data),
                out,
                "--trees",
                str(trees),
                "--seed",
                str(SEED),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "metrics": json.loads(done.stdout)}


def workflow(trees: int, onnx: bool = True, registered: bool = False) -> dict[str, Any]:
    name = (
        f"bench-train-{trees}{'' if onnx else '-skops-only'}{'-registered' if registered else ''}"
    )
    register = {
        "name": "register",
        "type": "register",
        "needs": ["train"],
        "params": {"model": "train", "name": name},
    }
    return {
        "name": name,
        "tasks": [
            {"name": "ingest", "type": "ingest", "params": {"dataset": "digits"}},
            {
                "name": "train",
                "type": "train",
                "needs": ["ingest"],
                "params": {
                    "input": "ingest",
                    "target": "target",
                    "estimator": "RandomForestClassifier",
                    "hyperparameters": {"n_estimators": trees, "random_state": SEED},
                    "preprocessing": {"impute": "median", "scale": "standard"},
                    "validation": {"method": "holdout", "test_size": 0.2, "seed": SEED},
                    "onnx": onnx,
                },
            },
            *([register] if registered else []),
        ],
    }


def platform_run(client: httpx.Client, headers: dict[str, str], name: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    job = _ok(
        client.post(f"/api/v1/projects/{PROJECT}/workflows/{name}/jobs", json={}, headers=headers),
        {201},
        "start job",
    )
    while job["status"] not in TERMINAL:
        time.sleep(0.05)
        job = _ok(client.get(f"/api/v1/jobs/{job['id']}", headers=headers), {200}, "poll")
    wall = time.perf_counter() - t0
    if job["status"] != "succeeded":
        raise SystemExit(f"job {job['status']}: {job.get('error')} {job['tasks']}")
    from datetime import datetime

    started = datetime.fromisoformat(job["started_at"]).timestamp()
    finished = datetime.fromisoformat(job["finished_at"]).timestamp()
    train = next(t for t in job["tasks"] if t["name"] == "train")
    result = {
        "wall_s": wall,
        "server_wall_s": finished - started,
        "metrics": train["outputs"]["metrics"],
    }
    register = next((t for t in job["tasks"] if t["name"] == "register"), None)
    if register is not None:
        version = register["outputs"]["version"]
        path = f"/api/v1/projects/{PROJECT}/models/{name}/versions/{version}"
        while True:
            found = _ok(client.get(path, headers=headers), {200}, "version")
            if found["onnx"]["status"] != "pending":
                break
            time.sleep(0.05)
        if found["onnx"]["status"] != "ready":
            raise SystemExit(f"the ONNX export did not succeed: {found['onnx']}")
        result["onnx_ready_s"] = time.perf_counter() - t0
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--trees", default="100,1000")
    args = parser.parse_args()
    sizes = [int(t) for t in args.trees.split(",")]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Platform("postgres", 2) as platform:
        data = digits_parquet(Path(tmp))
        with httpx.Client(base_url=platform.url, timeout=120) as client:
            headers = seed(client, platform)
            token = headers["Authorization"].split(" ", 1)[1]
            with Client(platform.url, token=token) as sdk:
                sdk.datasets.upload(PROJECT, "digits", data)
            for trees in sizes:
                specs = {
                    "platform": workflow(trees),
                    "platform+register": workflow(trees, registered=True),
                    "platform-no-onnx": workflow(trees, False),
                }
                for spec in specs.values():
                    _ok(
                        client.post(
                            f"/api/v1/projects/{PROJECT}/workflows", json=spec, headers=headers
                        ),
                        {200, 201},
                        "apply",
                    )
                    platform_run(client, headers, spec["name"])  # warm-up (imports, caches)
                plain(data, trees)
                runs: dict[str, list[dict[str, Any]]] = {"plain": [], **{k: [] for k in specs}}
                for _ in range(args.reps):
                    runs["plain"].append(plain(data, trees))
                    for kind, spec in specs.items():
                        runs[kind].append(platform_run(client, headers, spec["name"]))
                p = statistics.median(r["wall_s"] for r in runs["plain"])
                budget = p * 1.1 + 2.0
                for kind in specs:
                    a = statistics.median(r["wall_s"] for r in runs[kind])
                    s = statistics.median(r["server_wall_s"] for r in runs[kind])
                    ready = [r["onnx_ready_s"] for r in runs[kind] if "onnx_ready_s" in r]
                    onnx_ready = statistics.median(ready) if ready else None
                    rows.append(
                        {
                            "trees": trees,
                            "contender": kind,
                            "plain_wall_s": p,
                            "platform_wall_s": a,
                            "platform_server_wall_s": s,
                            "ratio": a / p,
                            "overhead_s": a - p,
                            "budget_s": budget,
                            "target_met": a <= budget,
                            "onnx_ready_s": onnx_ready,
                            "plain_accuracy": runs["plain"][0]["metrics"]["accuracy"],
                            "platform_accuracy": runs[kind][0]["metrics"]["accuracy"],
                            "runs": runs[kind],
                        }
                    )
                    print(
                        f"trees={trees} {kind}: plain {p:.2f}s, platform {a:.2f}s "
                        f"(server {s:.2f}s), ratio {a / p:.2f}, overhead {a - p:+.2f}s, "
                        f"budget {budget:.2f}s, met={a <= budget}, onnx ready {onnx_ready}",
                        file=sys.stderr,
                        flush=True,
                    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "training.json").write_text(json.dumps(rows, indent=2))
    print(
        "| trees | contender | plain wall | platform wall (client) | server wall | ratio | "
        "overhead | budget (plain x 1.1 + 2 s) | met | onnx ready |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|:--:|---:|")
    for r in rows:
        print(
            f"| {r['trees']} | {r['contender']} | {r['plain_wall_s']:.2f} s | "
            f"{r['platform_wall_s']:.2f} s | "
            f"{r['platform_server_wall_s']:.2f} s | {r['ratio']:.2f}x | "
            f"{r['overhead_s']:+.2f} s | {r['budget_s']:.2f} s | "
            f"{'yes' if r['target_met'] else 'no'} | "
            + (f"{r['onnx_ready_s']:.2f} s |" if r["onnx_ready_s"] is not None else "- |")
        )


if __name__ == "__main__":
    main()
