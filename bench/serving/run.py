"""Benchmark: serving the same scikit-learn models with Armillary and with `mlflow models serve`.

    .venv/bin/python bench/serving/run.py [--duration 10]              (make bench-serving)

Models (bench/serving/models.py, same data and seeds on both sides): a logistic regression and
a 100-tree random forest on 20 features. Servers, one worker each, one at a time:

  armillary  `armillary up` (PostgreSQL, workers 0) with authentication on: each model is
             uploaded as ONNX to the registry and deployed; requests carry a deployment API
             key (`X-API-Key`) to `POST /api/v1/projects/{p}/deployments/{d}/predict`.
  mlflow     `mlflow models serve --env-manager local --workers 1` from its own virtual
             environment (bench/.venvs/mlflow, outside uv.lock; MLFLOW telemetry off),
             `POST /invocations`.
  floor      onnxruntime called in-process on the same ONNX file (one thread), no HTTP.

Load: wrk at concurrency 1 and 16 (1 and 4 threads), single rows and 100-row batches, the same
`dataframe_split` body on both servers, `--duration` seconds each after a warm-up. Every
answer must be 2xx. Results: bench/results/serving.json and a table on stdout.

Targets (issue 7): single-row p50 <= 1/10 of MLflow's, throughput >= 10x MLflow's, and p50 at
most 1 ms above the in-process floor.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "workflows"))
sys.path.insert(0, str(HERE))

from armillary_graphs import PROJECT, Platform, _ok, seed  # noqa: E402
from models import FEATURES, rows  # noqa: E402

RESULTS = REPO / "bench" / "results"
MLFLOW_VENV = REPO / "bench" / ".venvs" / "mlflow"
MODELS = ("logreg", "forest")
CONCURRENCY = {1: ["-t1", "-c1"], 16: ["-t4", "-c16"]}
BATCHES = (1, 100)
TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def body(n: int) -> bytes:
    return json.dumps({"dataframe_split": {"columns": FEATURES, "data": rows(n)}}).encode()


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    url: str, body_path: Path, concurrency: int, duration: int, key: str = ""
) -> dict[str, Any]:
    cmd = [
        "wrk",
        *CONCURRENCY[concurrency],
        f"-d{duration}s",
        "--latency",
        "-s",
        str(HERE / "post.lua"),
        url,
    ]
    env = {**os.environ, "BENCH_BODY": str(body_path), "BENCH_KEY": key}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    out = done.stdout
    if done.returncode != 0:
        raise SystemExit(f"wrk failed: {done.stderr}\n{out}")
    non2xx = int(re.search(r"bench_non2xx: (\d+)", out).group(1))  # type: ignore[union-attr]
    if non2xx:
        raise SystemExit(f"{non2xx} answers were not 2xx from {url}:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
        "p99_ms": _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
    }


def floor(onnx_path: Path, n: int, repeats: int = 5_000) -> dict[str, float]:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.asarray(rows(n), dtype=np.float32)
    for _ in range(200):
        session.run(None, {name: x})
    timings = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        timings.append((time.perf_counter() - t0) * 1000)
    timings.sort()
    return {"p50_ms": timings[len(timings) // 2], "p99_ms": timings[int(len(timings) * 0.99)]}


def measure(url: str, bodies: dict[int, Path], duration: int, key: str = "") -> dict[str, Any]:
    results: dict[str, Any] = {}
    wrk(url, bodies[1], 16, 3, key)  # warm-up
    for n in BATCHES:
        for c in CONCURRENCY:
            results[f"rows{n}_c{c}"] = wrk(url, bodies[n], c, duration, key)
            print(
                f"  {url} rows={n} c={c}: {results[f'rows{n}_c{c}']}", file=sys.stderr, flush=True
            )
    return results


def armillary(model_dir: Path, bodies: dict[int, Path], duration: int) -> dict[str, Any]:
    from armillary.sdk import Client

    signature = (model_dir / "signature.json").read_text()
    out: dict[str, Any] = {}
    with (
        Platform("postgres", 0) as platform,
        httpx.Client(base_url=platform.url, timeout=60) as http,
    ):
        headers = seed(http, platform)
        token = headers["Authorization"].split(" ", 1)[1]
        with Client(platform.url, token=token) as client:
            for name in MODELS:
                client.models.create(PROJECT, name)
                multipart = {"signature": signature, "metrics": "{}"}
                with (model_dir / f"{name}.onnx").open("rb") as handle:
                    _ok(
                        http.post(
                            f"/api/v1/projects/{PROJECT}/models/{name}/versions/upload",
                            files={"file": ("model.onnx", handle)},
                            data=multipart,
                            headers=headers,
                        ),
                        {201},
                        "upload",
                    )
                _ok(
                    http.post(
                        f"/api/v1/projects/{PROJECT}/deployments",
                        headers=headers,
                        json={
                            "name": name,
                            "routing": {"mode": "random"},
                            "variants": [
                                {"name": "main", "model": name, "version": 1, "weight": 1}
                            ],
                        },
                    ),
                    {201},
                    "deploy",
                )
                key = _ok(
                    http.post(
                        f"/api/v1/projects/{PROJECT}/deployments/{name}/keys",
                        headers=headers,
                        json={"name": "bench"},
                    ),
                    {201},
                    "key",
                )["key"]
                url = f"{platform.url}/api/v1/projects/{PROJECT}/deployments/{name}/predict"
                check = http.post(
                    url,
                    content=bodies[1].read_bytes(),
                    headers={"X-API-Key": key, "Content-Type": "application/json"},
                )
                _ok(check, {200}, "predict")
                anonymous = http.post(
                    url,
                    content=bodies[1].read_bytes(),
                    headers={"Content-Type": "application/json"},
                )
                if anonymous.status_code != 401:
                    raise SystemExit(f"no key should give 401, got {anonymous.status_code}")
                out[name] = measure(url, bodies, duration, key)
    return out


def mlflow(model_dir: Path, bodies: dict[int, Path], duration: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARMILLARY_", "VIRTUAL_ENV"))}
    env.update(TELEMETRY_OFF)
    env["PATH"] = f"{MLFLOW_VENV / 'bin'}:{env['PATH']}"
    for name in MODELS:
        port = free_port()
        cmd = [
            str(MLFLOW_VENV / "bin" / "mlflow"),
            "models",
            "serve",
            "-m",
            str(model_dir / name),
            "--env-manager",
            "local",
            "--workers",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ]
        log = (RESULTS / f"serving-mlflow-{name}.log").open("wb")
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}/invocations"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"mlflow models serve did not start; see {log.name}")
                time.sleep(0.5)
            check = httpx.post(
                url,
                content=bodies[1].read_bytes(),
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            _ok(check, {200}, "mlflow predict")
            out[name] = measure(url, bodies, duration)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not (MLFLOW_VENV / "bin" / "mlflow").exists():
        subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
        subprocess.run(
            [
                str(MLFLOW_VENV / "bin" / "pip"),
                "install",
                "-q",
                "mlflow>=2.16",
                "scikit-learn",
                "pandas",
            ],
            check=True,
            env={**os.environ, **TELEMETRY_OFF},
        )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ours, theirs = work / "armillary", work / "mlflow"
        subprocess.run(
            [sys.executable, str(HERE / "models.py"), "armillary", str(ours)], check=True
        )
        subprocess.run(
            [str(MLFLOW_VENV / "bin" / "python"), str(HERE / "models.py"), "mlflow", str(theirs)],
            check=True,
            env={**os.environ, **TELEMETRY_OFF},
        )
        bodies = {n: work / f"body{n}.json" for n in BATCHES}
        for n, path in bodies.items():
            path.write_bytes(body(n))
        results = {
            "floor": {
                m: {f"rows{n}": floor(ours / f"{m}.onnx", n) for n in BATCHES} for m in MODELS
            },
            "mlflow": mlflow(theirs, bodies, args.duration),
            "armillary": armillary(ours, bodies, args.duration),
        }
    (RESULTS / "serving.json").write_text(json.dumps(results, indent=2))
    print(
        "| model | rows | c | Armillary p50 / p99 | req/s | MLflow p50 / p99 | req/s | "
        "p50 ratio | req/s ratio | floor p50 | above floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in MODELS:
        for n in BATCHES:
            for c in CONCURRENCY:
                a = results["armillary"][m][f"rows{n}_c{c}"]
                f = results["mlflow"][m][f"rows{n}_c{c}"]
                fl = results["floor"][m][f"rows{n}"]
                print(
                    f"| {m} | {n} | {c} | {a['p50_ms']:.2f} / {a['p99_ms']:.2f} ms | {a['rps']:.0f} "
                    f"| {f['p50_ms']:.2f} / {f['p99_ms']:.2f} ms | {f['rps']:.0f} "
                    f"| {a['p50_ms'] / f['p50_ms']:.3f} | {a['rps'] / f['rps']:.1f}x "
                    f"| {fl['p50_ms']:.3f} ms | {a['p50_ms'] - fl['p50_ms']:+.2f} ms |"
                )


if __name__ == "__main__":
    main()
