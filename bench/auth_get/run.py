"""Benchmark: authenticated ``GET /api/v1/projects/{slug}`` against two floors, in one run.

    .venv/bin/python bench/auth_get/run.py        (make bench-auth)

Servers, one at a time, each one uvicorn worker (uvloop, httptools, no access log, log level
warning) on a free loopback port:

  armillary   the embedded platform (create_app) on PostgreSQL + Redis db 13
  floor1      bare FastAPI returning the same JSON
  floor2      FastAPI doing JWT verify + one raw asyncpg select
  and two Armillary variants that switch one layer, to price it directly (c=32 only):
  armillary+accesslog   log level INFO (the JSON access log, written to a file)
  armillary-ratelimit   rate limiting disabled
  and the other two shapes (bench/auth_get/shapes.py; --no-shapes skips them):
  identity-service      the identity service's own process on the same PostgreSQL and Redis
  armillary-sqlite      the embedded platform on SQLite, no Redis (its own seed)

Each server gets a pre-flight (every response 200 with the expected JSON, 401 without a
token where auth applies), a warm-up, then ``wrk --latency`` at concurrency 1 and 32. The wrk
Lua script counts non-2xx responses; any makes the run fail. Then ``profile.py`` prices each
layer from an in-process profile. Results: bench/results/auth_get.md (and .json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import shapes
from common import (
    BENCH_DIR,
    PG_BENCH_DSN,
    PROJECT_PATH,
    REPO,
    RESULTS,
    BenchConfig,
    Seed,
    clean_env,
    code_revision,
    free_port,
    machine_info,
    postgres_version,
    prepare_services,
    seed_sync,
)

PYTHON = sys.executable
LUA = BENCH_DIR / "auth.lua"
LOGS = RESULTS / "logs"
UVICORN_FLAGS = [
    "--host",
    "127.0.0.1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--no-access-log",
    "--log-level",
    "warning",
    "--no-server-header",
]
CONCURRENCY = {1: ["-t1", "-c1"], 32: ["-t2", "-c32"]}
TARGET_RATIO = 0.6
TARGET_P99_MS = 100.0


@dataclass
class WrkResult:
    server: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    non2xx: int
    socket_errors: str
    server_cpu_us_per_req: float
    # Cores busy during the measurement: PostgreSQL + Redis (all their processes, so other
    # users of the same servers too), and every other process but the server and wrk.
    services_cores: float
    other_cores: float
    # Connections opened to armillary_bench during the measurement (pg_stat_database.sessions).
    pg_sessions_opened: int


_TICKS = os.sysconf("SC_CLK_TCK")


def _system_busy_seconds() -> float:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICKS  # minus idle and iowait


def _services_cpu_seconds() -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        if comm.startswith(("postgres", "redis-server")):
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def _pg_sessions() -> int:
    """Sessions ever opened to the benchmark database (PostgreSQL 14+), by a fresh connection
    that is itself counted, so the difference of two readings is off by one."""
    import asyncpg

    async def read() -> int:
        conn = await asyncpg.connect(PG_BENCH_DSN)
        try:
            value = await conn.fetchval(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
            return int(value or 0)
        finally:
            await conn.close()

    return asyncio.run(read())


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Server:
    """One uvicorn worker in a subprocess we started (and stop, by pid)."""

    def __init__(self, name: str, target: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cmd = [PYTHON, "-m", "uvicorn", *target, *UVICORN_FLAGS, "--port", str(self.port)]
        self.env = {**clean_env(), **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = LOGS / f"{name}.log"

    def __enter__(self) -> Server:
        LOGS.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited early; see {self.log_path}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{self.name} did not become ready; see {self.log_path}")

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


# --- checks and load -----------------------------------------------------------------------


def preflight(server: Server, seed: Seed, *, auth: bool, expected: dict[str, Any]) -> None:
    """A wrong set-up must not benchmark 401s: every answer is 200 with the expected JSON."""
    headers = {"Authorization": f"Bearer {seed.token}"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(20):
            response = client.get(PROJECT_PATH, headers=headers)
            if response.status_code != 200:
                raise SystemExit(
                    f"{server.name}: pre-flight got {response.status_code}: {response.text}"
                )
            if response.json() != expected:
                raise SystemExit(
                    f"{server.name}: pre-flight body differs:\n{response.text}\nexpected:\n{json.dumps(expected)}"
                )
        if auth:
            anonymous = client.get(PROJECT_PATH)
            if anonymous.status_code != 401:
                raise SystemExit(
                    f"{server.name}: no token should give 401, got {anonymous.status_code}"
                )


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk(
    server: Server, seed: Seed, concurrency: int, duration: int, *, record: bool = True
) -> WrkResult:
    cmd = [
        "wrk",
        *CONCURRENCY[concurrency],
        f"-d{duration}s",
        "--latency",
        "-s",
        str(LUA),
        server.url + PROJECT_PATH,
    ]
    sessions_before = _pg_sessions()
    cpu_before = server.cpu_seconds()
    busy_before, services_before = _system_busy_seconds(), _services_cpu_seconds()
    wrk_before, started = _children_cpu_seconds(), time.monotonic()
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env={**clean_env(), "BENCH_TOKEN": seed.token},
        timeout=duration + 60,
    )
    cpu = server.cpu_seconds() - cpu_before
    elapsed = time.monotonic() - started
    services = _services_cpu_seconds() - services_before
    others = _system_busy_seconds() - busy_before - cpu - services
    others -= _children_cpu_seconds() - wrk_before  # wrk itself
    sessions = _pg_sessions() - sessions_before - 1  # minus the reading's own connection
    out = done.stdout
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr}\n{out}")
    try:
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
        p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
        non2xx = int(re.search(r"bench_non2xx: (\d+)", out).group(1))  # type: ignore[union-attr]
    except (AttributeError, ValueError) as exc:
        raise SystemExit(f"cannot parse wrk output ({exc}):\n{out}") from exc
    errors = re.search(r"Socket errors: (.*)", out)
    result = WrkResult(
        server=server.name,
        concurrency=concurrency,
        requests=requests,
        rps=rps,
        p50_ms=p50,
        p99_ms=p99,
        non2xx=non2xx,
        socket_errors=errors.group(1).strip() if errors else "",
        server_cpu_us_per_req=cpu / requests * 1e6 if requests else float("nan"),
        services_cores=max(0.0, services / elapsed),
        other_cores=max(0.0, others / elapsed),
        pg_sessions_opened=sessions,
    )
    if non2xx or "Non-2xx" in out or requests == 0:
        raise SystemExit(
            f"{server.name} c={concurrency}: {non2xx} non-2xx responses; failing the run\n{out}"
        )
    if record:
        print(
            f"  {server.name:<22} c={concurrency:<3} {rps:>9.1f} req/s  p50 {p50:7.2f} ms  "
            f"p99 {p99:7.2f} ms  cpu {result.server_cpu_us_per_req:7.0f} us/req  "
            f"pg+redis {result.services_cores:.2f} others {result.other_cores:.2f} cores  "
            f"pg connections opened {sessions}",
            flush=True,
        )
    return result


def measure(
    server: Server, seed: Seed, duration: int, warmup: int, levels: tuple[int, ...] = (1, 32)
) -> list[WrkResult]:
    wrk(server, seed, 32, warmup, record=False)
    return [wrk(server, seed, c, duration) for c in levels]


def measure_other_shapes(
    config: BenchConfig, seed: Seed, duration: int, warmup: int
) -> list[WrkResult]:
    """The identity service's own process on the seeded PostgreSQL database, then the
    embedded platform on SQLite (seeded through its own API)."""
    results: list[WrkResult] = []
    with Server("identity-service", shapes.IDENTITY_TARGET, shapes.identity_env(config)) as server:
        preflight(server, seed, auth=True, expected=seed.body)
        results += measure(server, seed, duration, warmup)
    env = shapes.sqlite_env(config)
    shapes.migrate_sqlite(config, env)
    with Server("armillary-sqlite", ["armillary.app:create_app", "--factory"], env) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            own = seed_sync(client, config)
        preflight(server, own, auth=True, expected=own.body)
        results += measure(server, own, duration, warmup)
    return results


# --- report --------------------------------------------------------------------------------


def _pick(results: list[WrkResult], server: str, c: int) -> WrkResult | None:
    return next((r for r in results if r.server == server and r.concurrency == c), None)


def render(
    results: list[WrkResult], machine: dict[str, str], profile_md: str, elapsed: float
) -> str:
    lines = [
        "# Authenticated GET /api/v1/projects/{slug}",
        "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed:.0f} s in total. "
        f"Machine: {machine['nproc']} cores, {machine['cpu']}; Linux {machine['kernel']}; "
        f"Python {machine['python']}; PostgreSQL {machine['postgres']}; {machine['redis']}; "
        f"{machine['wrk']}. wrk, PostgreSQL, Redis and the server share the same cores; "
        f"1-minute load average {machine['loadavg_start']} at the start, "
        f"{machine['loadavg_end']} at the end. Code: {machine['code_start']} at the start"
        + (
            ""
            if machine["code_end"] == machine["code_start"]
            else f", {machine['code_end']} at the end"
        )
        + ".",
        "",
        "| server | concurrency | requests/s | p50 (ms) | p99 (ms) | server CPU per request (µs) "
        "| PostgreSQL connections opened | PostgreSQL + Redis busy (cores) "
        "| other processes busy (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.server} | {r.concurrency} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.server_cpu_us_per_req:,.0f} | {r.pg_sessions_opened:,} | {r.services_cores:.2f} | "
            f"{r.other_cores:.2f} |"
        )
    lines += [
        "",
        "Ratios of throughput (requests/s):",
        "",
        "| concurrency | Armillary / floor2 (JWT + asyncpg) | Armillary / floor1 (bare FastAPI) | floor2 / floor1 |",
        "|---:|---:|---:|---:|",
    ]
    for c in (1, 32):
        a, f1, f2 = (_pick(results, s, c) for s in ("armillary", "floor1", "floor2"))
        if a and f1 and f2:
            lines.append(
                f"| {c} | {a.rps / f2.rps:.2f} | {a.rps / f1.rps:.2f} | {f2.rps / f1.rps:.2f} |"
            )
    a32, f232 = _pick(results, "armillary", 32), _pick(results, "floor2", 32)
    a1, f21 = _pick(results, "armillary", 1), _pick(results, "floor2", 1)
    if a32 and f232 and a1 and f21:
        ratio32, ratio1 = a32.rps / f232.rps, a1.rps / f21.rps
        lines += [
            "",
            "Targets:",
            "",
            f"- throughput ≥ {TARGET_RATIO}x the raw-asyncpg floor: **{ratio32:.2f}x at c=32 — "
            f"{'met' if ratio32 >= TARGET_RATIO else 'NOT met'}** "
            f"({ratio1:.2f}x at c=1 — {'met' if ratio1 >= TARGET_RATIO else 'not met'})",
            f"- p99 ≤ {TARGET_P99_MS:.0f} ms at c=32: **{a32.p99_ms:.1f} ms — "
            f"{'met' if a32.p99_ms <= TARGET_P99_MS else 'NOT met'}**",
        ]
    shape_rows = [
        (r, _pick(results, "floor2", r.concurrency))
        for r in results
        if r.server in ("identity-service", "armillary-sqlite")
    ]
    if shape_rows:
        lines += [
            "",
            "Each shape against the raw-asyncpg floor (requests/s ratio):",
            "",
            "| shape | concurrency | requests/s | / floor2 | p99 (ms) |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r.server} | {r.concurrency} | {r.rps:,.0f} | {r.rps / f2.rps:.2f} | {r.p99_ms:.2f} |"
            for r, f2 in shape_rows
            if f2 is not None
        ]
    variants = [r for r in results if r.server in ("armillary+accesslog", "armillary-ratelimit")]
    if variants:
        lines += [
            "",
            "One layer switched (same run, same database, same token):",
            "",
            "| variant | concurrency | requests/s | vs armillary | p99 (ms) | CPU per request (µs) | Δ CPU per request (µs) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in variants:
            base = _pick(results, "armillary", r.concurrency)
            if base is None:
                continue
            lines.append(
                f"| {r.server} | {r.concurrency} | {r.rps:,.0f} | {r.rps / base.rps:.2f}x | {r.p99_ms:.2f} | "
                f"{r.server_cpu_us_per_req:,.0f} | {r.server_cpu_us_per_req - base.server_cpu_us_per_req:+,.0f} |"
            )
    if profile_md:
        lines += ["", profile_md.strip()]
    return "\n".join(lines) + "\n"


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk measurement")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of wrk warm-up per server")
    parser.add_argument(
        "--no-variants", action="store_true", help="skip the one-layer-off variants"
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the in-process profile")
    parser.add_argument(
        "--no-shapes",
        action="store_true",
        help="skip the SQLite embedded shape and the identity service's own process",
    )
    parser.add_argument("--profile-requests", type=int, default=2500)
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get update && apt-get install -y wrk")
    started = time.monotonic()
    RESULTS.mkdir(parents=True, exist_ok=True)
    config = BenchConfig()
    results: list[WrkResult] = []
    try:
        print("preparing database armillary_bench and Redis db 13", flush=True)
        prepare_services(config)
        machine = machine_info()
        machine["loadavg_start"] = Path("/proc/loadavg").read_text().split()[0]
        machine["code_start"] = code_revision()
        machine["postgres"] = asyncio.run(postgres_version())

        armillary_target = ["armillary.app:create_app", "--factory"]
        with Server("armillary", armillary_target, config.armillary_env()) as server:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                seed = seed_sync(client, config)
            preflight(server, seed, auth=True, expected=seed.body)
            results += measure(server, seed, args.duration, args.warmup)

        if not args.no_shapes:
            results += measure_other_shapes(config, seed, args.duration, args.warmup)

        floors = ["--app-dir", str(BENCH_DIR)]
        floor_env = {
            "BENCH_BODY": json.dumps(seed.body),
            "BENCH_JWKS": json.dumps(seed.jwks),
            "BENCH_PG_DSN": PG_BENCH_DSN,
            "BENCH_MY_ROLE": seed.body["my_role"],
        }
        with Server("floor1", [*floors, "floors:floor1"], floor_env) as server:
            preflight(server, seed, auth=False, expected=seed.body)
            results += measure(server, seed, args.duration, args.warmup)
        with Server("floor2", [*floors, "floors:floor2"], floor_env) as server:
            preflight(server, seed, auth=True, expected=seed.body)
            results += measure(server, seed, args.duration, args.warmup)

        if not args.no_variants:
            variants = {
                "armillary+accesslog": config.armillary_env(ARMILLARY_LOG_LEVEL="INFO"),
                "armillary-ratelimit": config.armillary_env(ARMILLARY_RATE_LIMIT_ENABLED="false"),
            }
            for name, env in variants.items():
                with Server(name, armillary_target, env) as server:
                    preflight(server, seed, auth=True, expected=seed.body)
                    # c=32 only: CPU per request and throughput price the layer; keeps the
                    # whole run under five minutes.
                    results += measure(server, seed, args.duration, args.warmup, (32,))

        profile_md = ""
        if not args.no_profile:
            out = RESULTS / "auth_get_profile.md"
            print("profiling Armillary in-process", flush=True)
            subprocess.run(
                [
                    PYTHON,
                    str(BENCH_DIR / "profile.py"),
                    "--requests",
                    str(args.profile_requests),
                    "--budget",
                    "12",
                    "--markdown-out",
                    str(out),
                ],
                cwd=REPO,
                env=clean_env(),
                stdout=subprocess.DEVNULL,  # its table is part of the report printed below
                check=True,
                timeout=240,
            )
            profile_md = out.read_text()
    finally:
        config.cleanup()

    elapsed = time.monotonic() - started
    machine["loadavg_end"] = Path("/proc/loadavg").read_text().split()[0]
    machine["code_end"] = code_revision()
    report = render(results, machine, profile_md, elapsed)
    (RESULTS / "auth_get.md").write_text(report)
    (RESULTS / "auth_get.json").write_text(
        json.dumps(
            {"machine": machine, "elapsed_s": elapsed, "results": [asdict(r) for r in results]},
            indent=2,
        )
    )
    print()
    print(report)


if __name__ == "__main__":
    main()
