"""Benchmark: what the Envoy gateway adds, against the service directly and a bare Envoy.

    .venv/bin/python bench/gateway/run.py        (make bench-gateway)

One upstream, three ways to reach it, in the same run:

  direct    the embedded platform (``armillary.app:create_app --factory``), one uvicorn worker
            (uvloop, httptools, no access log) on PostgreSQL + Redis db 10. It serves every
            service, so it is the upstream of every cluster below.
  gateway   Envoy on the bootstrap ``armillary.gateway.config.render`` writes (jwt_authn against
            the platform's JWKS, per-route RBAC, router; retries, circuit breakers, outlier
            detection), every service cluster pointing at the upstream.
  bare      Envoy with one listener, one route (prefix /) to the same upstream and no HTTP
            filter but the router: the floor of any Envoy hop.

Two requests: the authenticated ``GET /api/v1/projects/{slug}`` of bench/auth_get (bearer
token), and a single-row ``POST .../deployments/{d}/predict`` of a logistic regression served
as ONNX (bench/serving's model and body; ``X-API-Key``). Each (request, path) gets a pre-flight
(200 with the same body; 401 without credentials) and a warm-up; then, for each repetition,
``wrk --latency`` at c=1 (latency) and c=32 (throughput) over every (request, path) in turn, so
drift in the shared machine's load falls on all three alike. Medians over repetitions are
reported with the ratios. Results: bench/results/gateway.md and .json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent


def _load(name: str, path: Path) -> ModuleType:
    """bench/ is not a package and two of its scripts are called run.py: load by path."""
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


common: Any = _load("auth_get_common", BENCH / "auth_get" / "common.py")
# A database and Redis db of our own, so this run and `make bench-auth` (db 13) or the test
# suite (dbs 15 down) never clear each other's data. The helpers read these at call time.
common.DB_NAME = "armillary_gwbench"
common.PG_BENCH_DSN = f"postgresql://postgres@127.0.0.1:5432/{common.DB_NAME}"
common.DATABASE_URL = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{common.DB_NAME}"
common.REDIS_URL = "redis://127.0.0.1:6379/10"
sys.modules["common"] = common  # auth_get/run.py imports it by that name
auth_run: Any = _load("auth_get_run", BENCH / "auth_get" / "run.py")
models: Any = _load("serving_models", BENCH / "serving" / "models.py")

from armillary.gateway.config import render  # noqa: E402
from armillary.gateway.runner import envoy_command  # noqa: E402
from armillary.gateway.settings import SERVICES, GatewaySettings  # noqa: E402

RESULTS: Path = common.RESULTS
LOGS = RESULTS / "logs"
LUA = HERE / "load.lua"
PATHS = ("direct", "gateway", "bare")
CONCURRENCY = {1: ["-t1", "-c1"], 32: ["-t2", "-c32"]}
MODEL = "gwbench-logreg"
TARGET_P50_ADDED_MS = 0.5
TARGET_THROUGHPUT_RATIO = 0.8
_TICKS = os.sysconf("SC_CLK_TCK")


# --- processes -----------------------------------------------------------------------------


def _pid_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def _database_sessions() -> int:
    import asyncpg

    # From the `postgres` database, so that asking does not count as a session of ours.
    conn = await asyncpg.connect(common.PG_ADMIN_DSN)
    try:
        value = await conn.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = $1", common.DB_NAME
        )
    finally:
        await conn.close()
    return int(value or 0)


def database_sessions() -> int:
    """Connections ever opened to the benchmark's database (PostgreSQL counts them). Opened
    during a measurement, they are the upstream's pool growing or churning (ADR 0035)."""
    return asyncio.run(_database_sessions())


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def bare_bootstrap(port: int, upstream_port: int) -> dict[str, Any]:
    """One listener, one route, no HTTP filter but the router; no admin interface."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "bare",
        "codec_type": "AUTO",
        "route_config": {
            "name": "bare",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                }
            ],
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    address = {"socket_address": {"address": "127.0.0.1", "port_value": upstream_port}}
    return {
        "node": {"id": "gwbench-bare", "cluster": "gwbench-bare"},
        "static_resources": {
            "listeners": [
                {
                    "name": "bare",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "upstream",
                    "type": "STATIC",
                    "connect_timeout": "2s",
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
                    },
                }
            ],
        },
    }


def gateway_settings(upstream: str, port: int) -> GatewaySettings:
    values: dict[str, Any] = {f"{service}_url": upstream for service in SERVICES}
    values.update(
        host="127.0.0.1",
        port=port,
        gateway_admin_port=common.free_port(),
        gateway_stats_port=common.free_port(),
    )
    return GatewaySettings.model_validate(values)


@contextmanager
def envoy(name: str, config_text: str, settings: GatewaySettings, url: str) -> Iterator[int]:
    """Run Envoy (the same binary and flags as `armillary gateway`) on ``config_text``; yields
    its pid once ``url`` + /api/v1/auth/jwks answers 200 (the gateway opens its listener after
    its first JWKS fetch)."""
    LOGS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"gwbench-{name}-"))
    config = work / "envoy.yaml"
    config.write_text(config_text)
    log_path = LOGS / f"gateway-{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            envoy_command(settings, config), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} Envoy exited early; see {log_path}")
            try:
                if httpx.get(url + "/api/v1/auth/jwks", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} Envoy did not become ready; see {log_path}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


# --- the two requests ----------------------------------------------------------------------


@dataclass
class Request:
    name: str
    path: str
    wrk_env: dict[str, str]
    expected: Any
    # Sent with and without credentials in the pre-flight.
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    # Fields that differ on every answer (a prediction's id).
    varying: tuple[str, ...] = ()


def _ok(response: httpx.Response, status: int, what: str) -> Any:
    if response.status_code != status:
        raise SystemExit(f"{what}: expected {status}, got {response.status_code}: {response.text}")
    return response.json()


def seed_predict(client: httpx.Client, token: str, model_dir: Path) -> str:
    """The data scientist registers the ONNX model, deploys it and makes an API key."""
    headers = {"Authorization": f"Bearer {token}"}
    base = f"/api/v1/projects/{common.PROJECT_SLUG}"
    _ok(client.post(f"{base}/models", json={"name": MODEL}, headers=headers), 201, "model")
    with (model_dir / "logreg.onnx").open("rb") as handle:
        _ok(
            client.post(
                f"{base}/models/{MODEL}/versions/upload",
                files={"file": ("model.onnx", handle)},
                data={"signature": (model_dir / "signature.json").read_text(), "metrics": "{}"},
                headers=headers,
            ),
            201,
            "upload",
        )
    deployment = {
        "name": MODEL,
        "routing": {"mode": "random"},
        "variants": [{"name": "main", "model": MODEL, "version": 1, "weight": 1}],
    }
    _ok(client.post(f"{base}/deployments", json=deployment, headers=headers), 201, "deploy")
    key = _ok(
        client.post(f"{base}/deployments/{MODEL}/keys", json={"name": "bench"}, headers=headers),
        201,
        "key",
    )
    return str(key["key"])


def build_model(out: Path) -> None:
    """bench/serving's logistic regression (same data and seed) as ONNX, without its forest."""
    import numpy as np
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x, y = models.data()
    model = LogisticRegression(max_iter=1_000).fit(x, y)
    onnx = to_onnx(
        model, np.asarray(x[:1], dtype=np.float32), options={id(model): {"zipmap": False}}
    )
    (out / "logreg.onnx").write_bytes(onnx.SerializeToString())
    signature = {
        "inputs": [{"name": f, "dtype": "Float64"} for f in models.FEATURES],
        "target": {"name": "label", "dtype": "Int64"},
        "problem": "classification",
        "classes": [0, 1],
    }
    (out / "signature.json").write_text(json.dumps(signature))


def preflight(base: str, request: Request) -> None:
    """A wrong set-up must not benchmark errors: 20 answers of 200 with the expected body,
    and 401 without credentials."""
    with httpx.Client(base_url=base, timeout=10) as client:
        method = "POST" if request.body is not None else "GET"
        content_type = {"Content-Type": "application/json"} if request.body else {}
        for _ in range(20):
            response = client.request(
                method,
                request.path,
                content=request.body,
                headers={**request.headers, **content_type},
            )
            body = _ok(response, 200, f"{base} {request.name} pre-flight")
            for name in request.varying:
                body.pop(name, None)
            if body != request.expected:
                raise SystemExit(f"{base} {request.name}: body {body} != {request.expected}")
        anonymous = client.request(method, request.path, content=request.body, headers=content_type)
        if anonymous.status_code != 401:
            raise SystemExit(f"{base} {request.name}: no credentials gave {anonymous.status_code}")


# --- load ----------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _search(pattern: str, text: str) -> str:
    match = re.search(pattern, text, re.M)
    if match is None:
        raise SystemExit(f"cannot find {pattern!r} in wrk output:\n{text}")
    return match.group(1)


@dataclass
class Sample:
    request: str
    path: str
    concurrency: int
    repetition: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    # CPU time per request of the upstream process and of the Envoy measured (none: direct).
    # Less disturbed by the shared machine's load than wall-clock latency is.
    upstream_cpu_us: float
    envoy_cpu_us: float
    # Cores busy during the measurement: ours (upstream, the Envoy measured, wrk) and every
    # other process on the machine (PostgreSQL, Redis, other people's work).
    ours_cores: float
    others_cores: float
    # PostgreSQL connections the upstream opened per 1,000 requests.
    db_connects_per_1k: float = 0.0


@dataclass
class Load:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: list[float]  # per request, for each of ``pids``
    ours_cores: float
    others_cores: float
    db_connects: int


def wrk(url: str, request: Request, concurrency: int, duration: int, pids: list[int]) -> Load:
    cmd = ["wrk", *CONCURRENCY[concurrency], f"-d{duration}s", "--latency", "-s", str(LUA), url]
    sessions_before = database_sessions()
    pids_before = [_pid_cpu_seconds(p) for p in pids]
    ours_before = sum(pids_before) + _children_cpu_seconds()
    busy_before, started = auth_run._system_busy_seconds(), time.monotonic()
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={**common.clean_env(), **request.wrk_env},
        timeout=duration + 60,
    )
    elapsed = time.monotonic() - started
    pids_cpu = [_pid_cpu_seconds(p) - before for p, before in zip(pids, pids_before, strict=True)]
    ours = sum(pids_cpu) + sum(pids_before) + _children_cpu_seconds() - ours_before
    busy = auth_run._system_busy_seconds() - busy_before
    db_connects = database_sessions() - sessions_before
    out = done.stdout
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr}\n{out}")
    non2xx = int(_search(r"bench_non2xx: (\d+)", out))
    requests = int(_search(r"(\d+) requests in", out))
    if non2xx or requests == 0:
        raise SystemExit(f"{url} c={concurrency}: {non2xx} non-2xx of {requests}\n{out}")
    return Load(
        requests=requests,
        rps=float(_search(r"Requests/sec:\s+([\d.]+)", out)),
        p50_ms=_ms(_search(r"^\s+50%\s+(\S+)", out)),
        p99_ms=_ms(_search(r"^\s+99%\s+(\S+)", out)),
        cpu_us=[cpu / requests * 1e6 for cpu in pids_cpu],
        ours_cores=ours / elapsed,
        others_cores=max(0.0, (busy - ours) / elapsed),
        db_connects=db_connects,
    )


# --- report --------------------------------------------------------------------------------


def medians(samples: list[Sample]) -> dict[tuple[str, str, int], dict[str, float]]:
    groups: dict[tuple[str, str, int], list[Sample]] = {}
    for s in samples:
        groups.setdefault((s.request, s.path, s.concurrency), []).append(s)
    return {
        key: {
            "rps": statistics.median(s.rps for s in group),
            "p50_ms": statistics.median(s.p50_ms for s in group),
            "p99_ms": statistics.median(s.p99_ms for s in group),
            "upstream_cpu_us": statistics.median(s.upstream_cpu_us for s in group),
            "envoy_cpu_us": statistics.median(s.envoy_cpu_us for s in group),
            "others_cores": statistics.median(s.others_cores for s in group),
            "db_connects_per_1k": statistics.median(s.db_connects_per_1k for s in group),
            "n": len(group),
        }
        for key, group in groups.items()
    }


def ratios(samples: list[Sample], request: str) -> dict[str, float]:
    """Paired within each repetition (the three paths measured back to back), then the median
    over repetitions: drift in the machine's load between repetitions cancels out."""
    by = {(s.path, s.concurrency, s.repetition): s for s in samples if s.request == request}
    reps = sorted({rep for (_, _, rep) in by})

    def diff(a: str, b: str) -> list[float]:
        return sorted(by[(a, 1, r)].p50_ms - by[(b, 1, r)].p50_ms for r in reps)

    def ratio(a: str, b: str) -> list[float]:
        return sorted(by[(a, 32, r)].rps / by[(b, 32, r)].rps for r in reps)

    def envoy_cpu(path: str) -> float:
        return statistics.median(by[(path, c, r)].envoy_cpu_us for c in (1, 32) for r in reps)

    def envoy_share(path: str) -> float:
        # Envoy's CPU per request over the upstream's, in the same measurement: contention
        # inflates both alike, so this share moves far less with the machine's load.
        return statistics.median(
            by[(path, c, r)].envoy_cpu_us / by[(path, c, r)].upstream_cpu_us
            for c in (1, 32)
            for r in reps
        )

    paired = {
        "gateway_minus_direct_p50_ms": diff("gateway", "direct"),
        "bare_minus_direct_p50_ms": diff("bare", "direct"),
        "gateway_minus_bare_p50_ms": diff("gateway", "bare"),
        "gateway_over_direct_rps_c32": ratio("gateway", "direct"),
        "bare_over_direct_rps_c32": ratio("bare", "direct"),
        "gateway_over_bare_rps_c32": ratio("gateway", "bare"),
    }
    # The spread over repetitions says how far the machine's load lets one trust the median.
    return {
        **{name: statistics.median(values) for name, values in paired.items()},
        **{f"{name}_min": values[0] for name, values in paired.items()},
        **{f"{name}_max": values[-1] for name, values in paired.items()},
        "gateway_envoy_cpu_us": envoy_cpu("gateway"),
        "bare_envoy_cpu_us": envoy_cpu("bare"),
        "gateway_envoy_cpu_share": envoy_share("gateway"),
        "bare_envoy_cpu_share": envoy_share("bare"),
    }


def _cell(r: dict[str, float], name: str, fmt: str) -> str:
    return f"{r[name]:{fmt}} ({r[name + '_min']:{fmt}} to {r[name + '_max']:{fmt}})"


def _spans(r: dict[str, float], name: str, target: float) -> str:
    """Whether the repetitions fall on both sides of the target: then the median alone
    decides, and the verdict says so."""
    low, high = r[name + "_min"], r[name + "_max"]
    if low <= target <= high:
        return (
            f"; the repetitions range from {low:.2f} to {high:.2f}, on both sides of the "
            "target, so this run does not settle it"
        )
    return ""


def render_report(
    samples: list[Sample], machine: dict[str, str], args: argparse.Namespace, elapsed: float
) -> tuple[str, dict[str, Any]]:
    m = medians(samples)
    requests = sorted({s.request for s in samples}, key=["auth_get", "predict"].index)
    lines = [
        "# Gateway overhead: direct, through the gateway, through a bare Envoy",
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed:.0f} s in total; "
        f"{args.repetitions} repetitions of {args.duration} s per measurement; medians over "
        "repetitions, ratios paired within a repetition. "
        f"Machine: {machine['nproc']} cores, {machine['cpu']}; Linux {machine['kernel']}; "
        f"Python {machine['python']}; {machine['wrk']}; {machine['envoy']}. The machine is "
        "shared: wrk, Envoy, the upstream, PostgreSQL, Redis and other people's work share the "
        f"same cores. 1-minute load average {machine['loadavg_start']} at the start, "
        f"{machine['loadavg_end']} at the end. Code: {machine['code']}.",
        "",
        "| request | path | c | requests/s | p50 (ms) | p99 (ms) | upstream CPU/request (µs) "
        "| Envoy CPU/request (µs) | others busy (cores) | DB connects / 1k requests |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for request in requests:
        for c in CONCURRENCY:
            for path in PATHS:
                r = m[(request, path, c)]
                lines.append(
                    f"| {request} | {path} | {c} | {r['rps']:,.0f} | {r['p50_ms']:.2f} "
                    f"| {r['p99_ms']:.2f} | {r['upstream_cpu_us']:,.0f} "
                    f"| {r['envoy_cpu_us']:,.0f} | {r['others_cores']:.2f} "
                    f"| {r['db_connects_per_1k']:.1f} |"
                )
    lines += [
        "",
        "Paired ratios: median over repetitions (lowest to highest in brackets).",
        "",
        "| request | gateway - direct p50, c=1 (ms) | bare - direct p50 (ms) "
        "| gateway - bare p50 (ms) | gateway / direct req/s, c=32 | bare / direct req/s "
        "| gateway / bare req/s | Envoy CPU/request, gateway - bare (µs) "
        "| Envoy CPU / upstream CPU, gateway; bare |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[str, Any] = {}
    verdicts = []
    for request in requests:
        r = ratios(samples, request)
        summary[request] = r
        lines.append(
            f"| {request} | {_cell(r, 'gateway_minus_direct_p50_ms', '+.2f')} "
            f"| {_cell(r, 'bare_minus_direct_p50_ms', '+.2f')} "
            f"| {_cell(r, 'gateway_minus_bare_p50_ms', '+.2f')} "
            f"| {_cell(r, 'gateway_over_direct_rps_c32', '.2f')} "
            f"| {_cell(r, 'bare_over_direct_rps_c32', '.2f')} "
            f"| {_cell(r, 'gateway_over_bare_rps_c32', '.2f')} "
            f"| {r['gateway_envoy_cpu_us'] - r['bare_envoy_cpu_us']:+,.0f} "
            f"| {r['gateway_envoy_cpu_share']:.0%}; {r['bare_envoy_cpu_share']:.0%} |"
        )
        added, ratio = r["gateway_minus_direct_p50_ms"], r["gateway_over_direct_rps_c32"]
        verdicts += [
            f"- {request}: gateway adds {added:+.2f} ms p50 (target ≤ {TARGET_P50_ADDED_MS} ms) — "
            f"**{'met' if added <= TARGET_P50_ADDED_MS else 'NOT met'}**"
            + _spans(r, "gateway_minus_direct_p50_ms", TARGET_P50_ADDED_MS),
            f"- {request}: gateway throughput {ratio:.2f}x direct at c=32 (target ≥ "
            f"{TARGET_THROUGHPUT_RATIO}x) — "
            f"**{'met' if ratio >= TARGET_THROUGHPUT_RATIO else 'NOT met'}**"
            + _spans(r, "gateway_over_direct_rps_c32", TARGET_THROUGHPUT_RATIO),
        ]
    lines += ["", "Targets:", "", *verdicts]
    data = {
        "machine": machine,
        "elapsed_s": elapsed,
        "repetitions": args.repetitions,
        "duration_s": args.duration,
        "medians": [
            {"request": k[0], "path": k[1], "concurrency": k[2], **v} for k, v in m.items()
        ],
        "ratios": summary,
        "samples": [asdict(s) for s in samples],
    }
    return "\n".join(lines) + "\n", data


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk measurement")
    # Many short repetitions rather than few long ones: on a shared machine the load drifts,
    # and each repetition measures the three paths back to back.
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up per path")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")

    # GatewaySettings reads ARMILLARY_* from the environment: the caller's (a TLS certificate,
    # another upstream) must not change what is measured. The upstream gets clean_env() too.
    for name in [n for n in os.environ if n.startswith("ARMILLARY_")]:
        del os.environ[name]
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    config = common.BenchConfig()
    model_dir = Path(tempfile.mkdtemp(prefix="gwbench-model-"))
    samples: list[Sample] = []
    try:
        print(f"preparing database {common.DB_NAME} and Redis db 10; building the model")
        common.prepare_services(config)
        build_model(model_dir)
        machine = common.machine_info()
        machine["loadavg_start"] = Path("/proc/loadavg").read_text().split()[0]
        machine["code"] = common.code_revision()
        target = ["armillary.app:create_app", "--factory"]
        with auth_run.Server("gwbench-upstream", target, config.armillary_env()) as upstream:
            with httpx.Client(base_url=upstream.url, timeout=60) as client:
                seed = common.seed_sync(client, config)
                key = seed_predict(client, seed.token, model_dir)
                body = json.dumps(
                    {"dataframe_split": {"columns": models.FEATURES, "data": models.rows(1)}}
                ).encode()
                predict_path = f"/api/v1/projects/{common.PROJECT_SLUG}/deployments/{MODEL}/predict"
                expected_predict: dict[str, Any] = _ok(
                    client.post(
                        predict_path,
                        content=body,
                        headers={"X-API-Key": key, "Content-Type": "application/json"},
                    ),
                    200,
                    "predict",
                )
            expected_predict.pop("prediction_id", None)
            body_file = model_dir / "body.json"
            body_file.write_bytes(body)
            requests = [
                Request(
                    "auth_get",
                    common.PROJECT_PATH,
                    {"BENCH_TOKEN": seed.token},
                    seed.body,
                    headers={"Authorization": f"Bearer {seed.token}"},
                ),
                Request(
                    "predict",
                    predict_path,
                    {"BENCH_BODY": str(body_file), "BENCH_KEY": key},
                    expected_predict,
                    headers={"X-API-Key": key},
                    body=body,
                    varying=("prediction_id",),
                ),
            ]
            gateway_port, bare_port = common.free_port(), common.free_port()
            settings = gateway_settings(upstream.url, gateway_port)
            bases = {
                "direct": upstream.url,
                "gateway": f"http://127.0.0.1:{gateway_port}",
                "bare": f"http://127.0.0.1:{bare_port}",
            }
            bare_text = yaml.safe_dump(bare_bootstrap(bare_port, upstream.port), sort_keys=False)
            assert upstream.proc is not None
            with (
                envoy("gateway", render(settings), settings, bases["gateway"]) as gateway_pid,
                envoy("bare", bare_text, settings, bases["bare"]) as bare_pid,
            ):
                machine["envoy"] = _envoy_version(settings)
                own = {"direct": [], "gateway": [gateway_pid], "bare": [bare_pid]}
                for request in requests:
                    for path in PATHS:
                        preflight(bases[path], request)
                        wrk(
                            bases[path] + request.path, request, 32, args.warmup, own[path]
                        )  # warm-up (the upstream's caches, Envoy's connection pools)
                for rep in range(1, args.repetitions + 1):
                    for request in requests:
                        for c in CONCURRENCY:
                            for path in PATHS:
                                pids = [upstream.proc.pid, *own[path]]
                                load = wrk(
                                    bases[path] + request.path, request, c, args.duration, pids
                                )
                                sample = Sample(
                                    request=request.name,
                                    path=path,
                                    concurrency=c,
                                    repetition=rep,
                                    requests=load.requests,
                                    rps=load.rps,
                                    p50_ms=load.p50_ms,
                                    p99_ms=load.p99_ms,
                                    upstream_cpu_us=load.cpu_us[0],
                                    envoy_cpu_us=sum(load.cpu_us[1:]),
                                    ours_cores=load.ours_cores,
                                    others_cores=load.others_cores,
                                    db_connects_per_1k=load.db_connects / load.requests * 1000,
                                )
                                samples.append(sample)
                                print(
                                    f"  rep {rep} {request.name:<8} {path:<7} c={c:<2} "
                                    f"{load.rps:>8.0f} req/s  p50 {load.p50_ms:6.2f} ms  "
                                    f"p99 {load.p99_ms:6.2f} ms  CPU/req upstream "
                                    f"{sample.upstream_cpu_us:5.0f} us envoy "
                                    f"{sample.envoy_cpu_us:4.0f} us  others "
                                    f"{load.others_cores:.2f} cores  DB connects "
                                    f"{load.db_connects}",
                                    flush=True,
                                )
    finally:
        config.cleanup()
        shutil.rmtree(model_dir, ignore_errors=True)

    machine["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]
    report, data = render_report(samples, machine, args, time.monotonic() - started)
    (RESULTS / "gateway.md").write_text(report)
    (RESULTS / "gateway.json").write_text(json.dumps(data, indent=2))
    print()
    print(report)


def _envoy_version(settings: GatewaySettings) -> str:
    binary = envoy_command(settings, Path("unused"))[0]
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"version: \S+/([\d.]+)/", out.stdout)
    return f"Envoy {match.group(1)}" if match else "Envoy ?"


if __name__ == "__main__":
    main()
