"""Benchmark: no-op task graphs on Armillary against Prefect 3 and Celery, in one run.

    .venv/bin/python bench/workflows/run.py        (make bench-workflows)

Contenders, one at a time, each in its own process (and the peers in their own virtual
environments under bench/.venvs/, outside uv.lock, created here when missing):

  prefect-thread      Prefect 3, ThreadPoolTaskRunner (its default), temporary local server
                      (SQLite under a fresh PREFECT_HOME)           peers/prefect_graphs.py
  prefect-dask        Prefect 3 + prefect-dask, DaskTaskRunner on a LocalCluster of 2 worker
                      processes (processes=True, 1 thread each)     peers/prefect_graphs.py
  celery              Celery, prefork pool, concurrency 2, RabbitMQ broker (own vhost),
                      Redis db 13 result backend                    peers/celery_graphs.py
  armillary-sqlite    `armillary up --workers 2`, embedded defaults (SQLite)
  armillary-postgres  the same on PostgreSQL (database armillary_bench_workflows)
                                                                    armillary_graphs.py
  armillary-postgres-inproc  the same, its noop tasks with `isolation: in_process` (ADR 0047):
                      run in the worker's process, no sandbox (not in the default run)

Graphs: a 100-task chain and a 1,002-task fan-out/fan-in (start -> 1,000 -> join); for
Armillary only, `--graphs chain-python` (the chain of `python` tasks, always sandboxed). Each
contender runs each graph once to warm up, then --reps times (default 3); the table shows the
median of each figure over the repetitions. Results: bench/workflows/results.json (all runs,
the table and the ratios), bench/results/workflows.md, logs in bench/results/logs/.

Telemetry off for every process started: DO_NOT_TRACK=1, PREFECT_SERVER_ANALYTICS_ENABLED=
false, PREFECT_API_URL unset. Every server listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
RESULTS = REPO / "bench" / "results"
LOGS = RESULTS / "logs"
VENVS = REPO / "bench" / ".venvs"
PREFECT_VENV = VENVS / "prefect"
CELERY_VENV = VENVS / "celery"
PREFECT_REQS = ["prefect>=3,<4", "prefect-dask"]
CELERY_REQS = ["celery[redis]>=5,<6"]
CONTENDERS = ["prefect-thread", "prefect-dask", "celery", "armillary-sqlite", "armillary-postgres"]
# Opt-in contenders: measured when --only names them.
EXTRA_CONTENDERS = ["armillary-postgres-inproc"]
ARMILLARY = ["armillary-sqlite", "armillary-postgres", "armillary-postgres-inproc"]
GRAPH_LABEL = {
    "chain": "chain, 100 tasks",
    "fanout": "fan-out/in, 1 + 1,000 + 1 tasks",
    "chain-python": "chain, 100 python tasks",
}
ARMILLARY_ONLY_GRAPHS = {"chain-python"}
TARGET_P50_MS = 50.0
TARGET_P99_MS = 250.0
TARGET_RATIO = 2.0
_TICKS = os.sysconf("SC_CLK_TCK")
SERVICES = ("postgres", "redis-server", "beam.smp")

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ARMILLARY_", "BENCH_", "PREFECT_", "CELERY_"))
    }
    env.update(TELEMETRY_OFF)
    env.update(extra)
    return env


def ensure_venv(path: Path, requirements: list[str], probe: str) -> None:
    python = path / "bin" / "python"
    if not python.exists():
        print(f"creating {path} ({', '.join(requirements)})", flush=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, env=clean_env())
    ok = subprocess.run(
        [str(python), "-c", probe], capture_output=True, check=False, env=clean_env()
    )
    if ok.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *requirements],
            check=True,
            env=clean_env(),
        )


# --- machine load ---------------------------------------------------------------------------


def _busy_seconds() -> float:
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _TICKS


def _services_seconds() -> float:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        if comm.startswith(SERVICES):
            fields = text.rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# --- contenders -----------------------------------------------------------------------------


def command(contender: str, args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    graphs = args.graphs
    if not contender.startswith("armillary-"):
        graphs = ",".join(g for g in args.graphs.split(",") if g not in ARMILLARY_ONLY_GRAPHS)
    common = ["--graphs", graphs, "--reps", str(args.reps), "--warmup", str(args.warmup)]
    if contender.startswith("prefect-"):
        runner = contender.split("-", 1)[1]
        home = tempfile.mkdtemp(prefix="bench-prefect-home-")
        return (
            [
                str(PREFECT_VENV / "bin" / "python"),
                str(HERE / "peers" / "prefect_graphs.py"),
                "--runner",
                runner,
                *common,
            ],
            clean_env(PREFECT_HOME=home),
        )
    if contender == "celery":
        return (
            [
                str(CELERY_VENV / "bin" / "python"),
                str(HERE / "peers" / "celery_graphs.py"),
                *common,
                "--log",
                str(LOGS / "workflows-celery-worker.log"),
            ],
            clean_env(),
        )
    db = contender.split("-")[1]
    return (
        [
            sys.executable,
            str(HERE / "armillary_graphs.py"),
            "--db",
            db,
            *common,
            "--workers",
            str(args.workers),
            "--start-timeout",
            str(args.start_timeout),
            *(["--in-process"] if contender.endswith("-inproc") else []),
        ],
        clean_env(),
    )


def run_contender(contender: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd, env = command(contender, args)
    log_path = LOGS / f"workflows-{contender}.log"
    print(f"--- {contender}: {' '.join(cmd[1:])}", flush=True)
    load_before = _loadavg()
    busy0, svc0, kids0, t0 = _busy_seconds(), _services_seconds(), _children_seconds(), time.time()
    with log_path.open("wb") as log:
        done = subprocess.run(
            cmd,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            check=False,
            timeout=args.contender_timeout,
        )
    elapsed = time.time() - t0
    busy = _busy_seconds() - busy0
    services = _services_seconds() - svc0
    ours = _children_seconds() - kids0
    machine = {
        "seconds": elapsed,
        "load_before": load_before,
        "load_after": _loadavg(),
        "contender_cores": ours / elapsed,
        "services_cores": services / elapsed,
        "other_cores": max(0.0, busy - ours - services) / elapsed,
    }
    lines = [ln for ln in done.stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-8:]
        reason = next(
            (ln for ln in reversed(tail) if ln.strip() and not ln.startswith(" ")), "no output"
        )
        print(f"    FAILED ({done.returncode}): {reason}\n    see {log_path}", flush=True)
        return {"contender": contender, "error": reason, "log": str(log_path), "machine": machine}
    result: dict[str, Any] = json.loads(lines[-1])
    result["machine"] = machine
    for graph, runs in result["graphs"].items():
        med = medians(runs)
        print(
            f"    {graph}: {med['wall_s']:.2f} s, {med['tasks_per_s']:.1f} tasks/s, "
            f"ready->started p50 {med['ready_to_started_p50_ms']:.1f} ms "
            f"p99 {med['ready_to_started_p99_ms']:.1f} ms",
            flush=True,
        )
    return result


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [r for r in runs if not r.get("warmup")] or runs
    keys = [k for k, v in measured[0].items() if isinstance(v, (int, float)) and k != "warmup"]
    out: dict[str, Any] = {}
    for key in keys:
        values = [r[key] for r in measured if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["reps"] = len(measured)
    return out


# --- report ---------------------------------------------------------------------------------


def _f(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def report(results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    graphs = [g for g in meta["graphs"]]
    lines = [
        f"# Workflow engine: no-op task graphs ({meta['started']}, {meta['seconds']:.0f} s)",
        "",
        f"Commit {meta['revision']}; {meta['machine']}. Median of {meta['reps']} runs after "
        f"{meta['warmup']} warm-up run(s) per contender and graph.",
        "",
        "| contender | graph | wall s | tasks/s | ms per task | ready→started p50 ms | "
        "p99 ms | client wall s | load avg | other processes busy (cores) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    table: dict[str, dict[str, Any]] = {}
    for contender in CONTENDERS + EXTRA_CONTENDERS:
        result = results.get(contender)
        if result is None:
            continue
        machine = result.get("machine", {})
        load = f"{machine.get('load_before', 0):.1f}→{machine.get('load_after', 0):.1f}"
        other = _f(machine.get("other_cores"), 2)
        if "error" in result:
            for graph in graphs:
                lines.append(
                    f"| {contender} | {GRAPH_LABEL[graph]} | pending | | | | | | {load} | {other} |"
                )
            continue
        for graph in graphs:
            if graph not in result["graphs"]:
                continue
            med = medians(result["graphs"][graph])
            table.setdefault(contender, {})[graph] = med
            lines.append(
                f"| {contender} | {GRAPH_LABEL[graph]} | {_f(med['wall_s'], 2)} | "
                f"{_f(med['tasks_per_s'])} | {_f(1000 * med['wall_s'] / med['tasks'], 2)} | "
                f"{_f(med['ready_to_started_p50_ms'])} | {_f(med['ready_to_started_p99_ms'])} | "
                f"{_f(med.get('client_wall_s'), 2)} | {load} | {other} |"
            )
    lines += [
        "",
        "wall: Prefect = the flow call (create the flow run, run it, final state); Celery = "
        "`apply_async` until the last result is in the client; Armillary = job.finished_at - "
        "job.started_at (server clock). client wall (Armillary only) = POST until the "
        "terminal status is seen (polling every 50 ms).",
        "",
    ]
    ratios: dict[str, Any] = {}
    failed = {c: r["error"] for c, r in results.items() if "error" in r}
    for name in ARMILLARY:
        if name in EXTRA_CONTENDERS and name not in results:
            continue
        arm = table.get(name)
        for graph in graphs:
            key = f"{name}/{graph}"
            if arm is None or graph not in arm:
                ratios[key] = "pending" + (f": {failed[name]}" if name in failed else "")
                continue
            a = arm[graph]
            entry: dict[str, Any] = {}
            for peer in ("prefect-thread", "prefect-dask", "celery"):
                p = table.get(peer, {}).get(graph)
                if p is None:
                    continue
                entry[f"tasks_per_s / {peer}"] = a["tasks_per_s"] / p["tasks_per_s"]
                entry[f"client tasks_per_s / {peer}"] = a["client_tasks_per_s"] / p["tasks_per_s"]
            entry["p50_ms"] = a["ready_to_started_p50_ms"]
            entry["p99_ms"] = a["ready_to_started_p99_ms"]
            ratios[key] = entry
    lines += [
        "Ratios (Armillary tasks/s ÷ peer tasks/s; target ≥ 2x Prefect's thread runner, "
        f"ready→started p50 ≤ {TARGET_P50_MS:.0f} ms and p99 ≤ {TARGET_P99_MS:.0f} ms):",
        "",
        "| Armillary | graph | ÷ prefect-thread | ÷ prefect-dask | ÷ celery | "
        "same, client wall | p50 target | p99 target |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for key, entry in ratios.items():
        db, graph = key.split("/")
        if isinstance(entry, str):
            lines.append(f"| {db} | {GRAPH_LABEL[graph]} | {entry} | | | | | |")
            continue

        def r(name: str, entry: dict[str, Any] = entry) -> str:
            v = entry.get(f"tasks_per_s / {name}")
            return "-" if v is None else f"{v:.2f}x"

        client = ", ".join(
            f"{entry[k]:.2f}x" for k in entry if k.startswith("client tasks_per_s /")
        )
        thread = entry.get("tasks_per_s / prefect-thread")
        verdict = "met" if thread is not None and thread >= TARGET_RATIO else "not met"
        lines.append(
            f"| {db} | {GRAPH_LABEL[graph]} | {r('prefect-thread')} ({verdict}) | "
            f"{r('prefect-dask')} | {r('celery')} | {client} | "
            f"{'met' if entry['p50_ms'] <= TARGET_P50_MS else 'not met'} "
            f"({entry['p50_ms']:.1f} ms) | "
            f"{'met' if entry['p99_ms'] <= TARGET_P99_MS else 'not met'} ({entry['p99_ms']:.1f} ms) |"
        )
    if failed:
        lines += ["", "Not measured:"]
        lines += [f"- {c}: {reason}" for c, reason in failed.items()]
    return "\n".join(lines) + "\n", {"medians": table, "ratios": ratios}


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    return done.stdout.strip()


def revision() -> str:
    head = _git("rev-parse", "--short", "HEAD") or "?"
    dirty = _git("--no-optional-locks", "status", "--porcelain", "--", "src")
    return f"{head} + uncommitted changes in src/" if dirty else f"{head} (src/ clean)"


def machine() -> str:
    model = "?"
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return (
        f"{os.cpu_count()} cores ({model}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--graphs", default="chain,fanout")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    parser.add_argument("--workers", type=int, default=2, help="armillary up --workers N")
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--contender-timeout", type=float, default=1800.0)
    parser.add_argument("--output", default=str(HERE / "results.json"))
    args = parser.parse_args()
    contenders = [c for c in args.only.split(",") if c]
    unknown = set(contenders) - set(CONTENDERS + EXTRA_CONTENDERS)
    if unknown:
        raise SystemExit(f"unknown contenders: {sorted(unknown)}")

    LOGS.mkdir(parents=True, exist_ok=True)
    if any(c.startswith("prefect") for c in contenders):
        ensure_venv(PREFECT_VENV, PREFECT_REQS, "import prefect, prefect_dask")
    if "celery" in contenders:
        ensure_venv(CELERY_VENV, CELERY_REQS, "import celery, redis")

    started = datetime.now(UTC)
    rev_start = revision()
    results: dict[str, dict[str, Any]] = {}
    for contender in contenders:
        try:
            results[contender] = run_contender(contender, args)
        except subprocess.TimeoutExpired:
            results[contender] = {
                "contender": contender,
                "error": f"timed out after {args.contender_timeout:.0f} s",
            }
    rev_end = revision()
    meta = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": (datetime.now(UTC) - started).total_seconds(),
        "revision": rev_start if rev_start == rev_end else f"{rev_start} → {rev_end}",
        "machine": machine(),
        "reps": args.reps,
        "warmup": args.warmup,
        "graphs": [g for g in args.graphs.split(",") if g],
    }
    markdown, summary = report(results, meta)
    print("\n" + markdown, flush=True)
    out = {"meta": meta, **summary, "markdown": markdown, "runs": results}
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "workflows.md").write_text(markdown)
    print(f"results: {args.output}, {RESULTS / 'workflows.md'}", flush=True)
    if any("error" in r for r in results.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
