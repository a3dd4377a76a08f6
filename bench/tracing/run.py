"""Benchmark: what tracing (ADR 0031) costs the authenticated GET and predict.

    .venv/bin/python bench/tracing/run.py [--duration 8] [--rounds 3]

Two servers run side by side on one database (``bench/tracing/server.py``: the embedded
platform, one uvicorn worker, uvloop + httptools, log level warning, set up as `armillary up`
sets it up):

  off  no OTEL_* variable: tracing is not installed
  on   OTEL_EXPORTER_OTLP_ENDPOINT = a local OTLP/HTTP endpoint, by default
       ``bench/tracing/sink.py``: its own process at nice 10, storing the raw exports and
       decoding them only after the measurements (in production the collector runs
       elsewhere; see sink.py for why the old in-process decoding receiver was unfair);
       ``--receiver inprocess`` restores that receiver, for comparison.
       OTEL_TRACES_SAMPLER_ARG = 0.1: parent-based, 10 % of new traces sampled

Requests: ``GET /api/v1/projects/{slug}`` with a bearer token, and ``POST
/api/v1/projects/{slug}/deployments/churn-api/predict`` (one ONNX logistic regression, 3
rows) with an API key. For each round, each endpoint and each server in turn (off, on,
alternating so drift on a shared machine hits both alike): ``wrk -t1 -c1`` (p50) and
``wrk -t2 -c32`` (throughput). Any non-2xx fails the run. Reported: medians over the rounds,
the throughput ratio on/off and the p50 delta. Targets: ratio >= 0.95, p50 delta <= 0.2 ms.
Results: bench/results/tracing.md (and .json). Needs wrk, PostgreSQL and Redis (as
bench/auth_get); drops and recreates the database ``armillary_bench``, flushes Redis db 13.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "auth_get"))
sys.path.insert(0, str(HERE.parent.parent))

import httpx  # noqa: E402
from common import (  # noqa: E402
    PROJECT_PATH,
    REPO,
    RESULTS,
    BenchConfig,
    clean_env,
    code_revision,
    free_port,
    machine_info,
    prepare_services,
    seed_sync,
)
from tests.integration.observability.otlp_receiver import Receiver  # noqa: E402
from tests.integration.serving.predict_support import (  # noqa: E402
    SIGNATURE,
    features,
    instances,
    model_bytes,
)

CONCURRENCY = {1: ["-t1", "-c1"], 32: ["-t2", "-c32"]}
PREDICT_PATH = f"{PROJECT_PATH}/deployments/churn-api/predict"
TARGET_RATIO, TARGET_P50_MS = 0.95, 0.2
TICKS = os.sysconf("SC_CLK_TCK")
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


class Sink:
    """``sink.py`` in its own process (see its docstring)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "sink.py")],
            cwd=REPO,
            env={**clean_env(), "PYTHONPATH": str(REPO / "src")},
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(20)

    def span_count(self) -> int:
        return int(httpx.get(self.url + "/count", timeout=300).json()["spans"])

    def cpu_seconds(self) -> float:
        return float(httpx.get(self.url + "/cpu", timeout=10).json()["seconds"])


class InProcessReceiver(Receiver):
    """The test receiver, decoding every export in this process as it arrives."""

    def __enter__(self) -> InProcessReceiver:
        super().__enter__()
        return self

    def span_count(self) -> int:
        return len(self.snapshot())

    def cpu_seconds(self) -> float:
        # This process's CPU: while wrk runs, the main thread only waits for it.
        return time.process_time()


class Server:
    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**clean_env(), **env, "PYTHONPATH": str(REPO / "src")}
        self.log = RESULTS / "logs" / f"tracing-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / "server.py"), str(self.port)],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited; see {self.log}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise SystemExit(f"{self.name} never became ready; see {self.log}")

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def seed_deployment(client: httpx.Client, token: str) -> str:
    """Model ``churn`` v1 (ONNX), deployment ``churn-api``, and an API key for it."""
    headers = {"Authorization": f"Bearer {token}"}
    base = PROJECT_PATH
    assert client.post(f"{base}/models", json={"name": "churn"}, headers=headers).is_success
    uploaded = client.post(
        f"{base}/models/churn/versions/upload",
        files={"file": ("model.onnx", model_bytes("good"), "application/octet-stream")},
        data={"signature": json.dumps(SIGNATURE)},
        headers=headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    deployment = {
        "name": "churn-api",
        "routing": {"mode": "random"},
        "variants": [{"name": "main", "model": "churn", "version": 1, "weight": 1}],
    }
    assert client.post(f"{base}/deployments", json=deployment, headers=headers).is_success
    key = client.post(f"{base}/deployments/churn-api/keys", json={"name": "b"}, headers=headers)
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    assert match is not None, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    server: Server, path: str, script: str, env: dict[str, str], concurrency: int, duration: int
) -> dict[str, float]:
    url = server.url + path
    cpu = server.cpu_seconds()
    done = subprocess.run(
        ["wrk", *CONCURRENCY[concurrency], f"-d{duration}s", "--latency", "-s", script, url],
        capture_output=True,
        text=True,
        env={**clean_env(), **env},
        timeout=duration + 60,
        check=False,
    )
    out = done.stdout
    non2xx = re.search(r"bench_non2xx: (\d+)", out)
    if done.returncode != 0 or non2xx is None or int(non2xx.group(1)) or "Non-2xx" in out:
        raise SystemExit(f"wrk {url} c={concurrency} failed:\n{out}\n{done.stderr}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    if requests == 0:
        raise NoResponse(f"wrk {url} c={concurrency}: no response in {duration} s")
    return {
        "cpu_us": (server.cpu_seconds() - cpu) / requests * 1e6,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),  # type: ignore[union-attr]
    }


class NoResponse(SystemExit):
    pass


def warm_up(server: Server, path: str, script: str, env: dict[str, str]) -> None:
    """A few seconds of load; again while nothing answers yet (a model's first load on a
    loaded machine can outlast the first round)."""
    for attempt in range(5):
        try:
            wrk(server, path, script, env, 32, 3)
            return
        except NoResponse:
            if attempt == 4:
                raise


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--receiver", choices=["sink", "inprocess"], default="sink")
    args = parser.parse_args()
    started = time.monotonic()
    config = BenchConfig()
    prepare_services(config)
    receiving: Sink | InProcessReceiver = Sink() if args.receiver == "sink" else InProcessReceiver()
    with receiving as receiver:
        tracing_env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_TRACES_SAMPLER_ARG": "0.1",
        }
        servers = {
            "off": Server("off", config.armillary_env()),
            "on": Server("on", config.armillary_env(**tracing_env)),
        }
        try:
            for server in servers.values():
                server.start()
            with httpx.Client(base_url=servers["off"].url, timeout=60) as client:
                seed = seed_sync(client, config)
                key = seed_deployment(client, seed.token)
            body = json.dumps({"instances": instances(features(3, 3))})
            cases = {
                "GET project": (
                    PROJECT_PATH,
                    str(REPO / "bench/auth_get/auth.lua"),
                    {"BENCH_TOKEN": seed.token},
                ),
                "predict": (
                    PREDICT_PATH,
                    str(HERE / "predict.lua"),
                    {"BENCH_KEY": key, "BENCH_BODY": body},
                ),
            }
            # Warm-up: models loaded, caches filled, connections open, in both servers.
            for server in servers.values():
                for path, script, env in cases.values():
                    warm_up(server, path, script, env)
            receiver_cpu = receiver.cpu_seconds()
            samples: dict[str, dict[str, dict[int, list[dict[str, float]]]]] = {
                case: {name: {1: [], 32: []} for name in servers} for case in cases
            }
            for round_number in range(args.rounds):
                order = ["off", "on"] if round_number % 2 == 0 else ["on", "off"]
                for case, (path, script, env) in cases.items():
                    for concurrency in (1, 32):
                        for name in order:
                            result = wrk(
                                servers[name], path, script, env, concurrency, args.duration
                            )
                            samples[case][name][concurrency].append(result)
                            print(
                                f"  round {round_number + 1} {case:<12} {name:<3} c={concurrency:<2} "
                                f"{result['rps']:8.1f} req/s  p50 {result['p50_ms']:.3f} ms  "
                                f"cpu {result['cpu_us']:.0f} us/req",
                                flush=True,
                            )
            receiver_cpu = receiver.cpu_seconds() - receiver_cpu
        finally:
            for server in servers.values():
                server.stop()
            config.cleanup()
        exported = receiver.span_count()
    report(samples, args, exported, receiver_cpu, time.monotonic() - started)


def _median(values: list[dict[str, float]], field: str) -> float:
    return statistics.median(v[field] for v in values)


def report(
    samples: dict[str, Any],
    args: argparse.Namespace,
    exported: int,
    receiver_cpu: float,
    seconds: float,
) -> None:
    rows, data = [], {}
    for case, by_server in samples.items():
        off_rps, on_rps = _median(by_server["off"][32], "rps"), _median(by_server["on"][32], "rps")
        off_p50, on_p50 = (
            _median(by_server["off"][1], "p50_ms"),
            _median(by_server["on"][1], "p50_ms"),
        )
        ratio, delta = on_rps / off_rps, on_p50 - off_p50
        cpu = {
            name: statistics.median(v["cpu_us"] for c in (1, 32) for v in by_server[name][c])
            for name in ("off", "on")
        }
        met = ratio >= TARGET_RATIO and delta <= TARGET_P50_MS
        data[case] = {
            "off_rps_c32": off_rps,
            "on_rps_c32": on_rps,
            "ratio": ratio,
            "off_p50_ms_c1": off_p50,
            "on_p50_ms_c1": on_p50,
            "p50_delta_ms": delta,
            "met": met,
            "cpu_us_per_request": cpu,
            "samples": by_server,
        }
        rows.append(
            f"| {case} | {off_rps:.0f} | {on_rps:.0f} | {ratio:.3f} | {off_p50:.3f} | "
            f"{on_p50:.3f} | {delta:+.3f} | {cpu['off']:.0f} | {cpu['on']:.0f} | "
            f"{cpu['on'] / cpu['off']:.3f} | {'met' if met else 'NOT met'} |"
        )
    machine = machine_info()
    lines = [
        "# Tracing overhead (bench/tracing/run.py)",
        "",
        f"Commit {code_revision()}; {args.rounds} rounds of {args.duration} s per measurement; "
        f"run took {seconds:.0f} s; {exported} spans exported by the `on` server (10 % sampled) "
        f"to the {args.receiver} receiver, which used {receiver_cpu:.1f} s of CPU while measured.",
        f"Machine: {machine}",
        "",
        f"Load average at the end: {os.getloadavg()[0]:.1f} (2 cores).",
        "",
        "| request | off req/s (c=32) | on req/s (c=32) | ratio | off p50 ms (c=1) "
        "| on p50 ms (c=1) | p50 delta ms | off CPU µs/req | on CPU µs/req | CPU ratio "
        "| target (≥0.95, ≤0.2 ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "tracing.md").write_text(text)
    (RESULTS / "tracing.json").write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
