"""Benchmark: Armillary's dataset profiler against pandas on a 10 M rows x 10 columns CSV.

    .venv/bin/python bench/datasets/profile_speed.py        (part of make bench-datasets)

The CSV (3 integer, 5 float columns, one with 1 % empty cells, and 2 low-cardinality string
columns) is generated once with Polars under bench/results/datasets/ and deleted at the end
(``--keep`` keeps it for the next run). Each contender runs in its own process under
``/usr/bin/time -v`` (peak RSS), in turn, ``--reps`` times; the best (lowest) wall time is used.
The file is in the page cache for all of them (just written, and read by each run before).

  armillary (python -m)   ``.venv/bin/python -m armillary.data.profiling.profiler PATH csv
                          profile``, what the server runs: interpreter start-up and imports
                          included; the JSON answer is parsed and its row count checked.
  armillary (in-process)  the same ``profile(path, "csv")`` call timed inside its process,
                          start-up excluded.
  pandas (C engine)       ``pd.read_csv`` + ``df.describe(include="all")`` + ``df.nunique()`` in
                          bench/.venvs/pandas (made here if missing, outside uv.lock);
                          whole process and in-process work both timed.
  pandas (pyarrow engine) the same with ``engine="pyarrow"``, a stronger reader.

Polars gets POLARS_MAX_THREADS = the server's default profile_threads (2). Target: Armillary
rows/s at least 3x pandas (C engine, whole process). Results: bench/results/datasets_profile.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    PANDAS_PYTHON,
    PYTHON,
    RESULTS,
    TIME_BIN,
    clean_env,
    ensure_pandas_venv,
    machine_info,
    max_rss_kib,
    versions,
)

TARGET_RATIO = 3.0
PROFILE_THREADS = "2"  # DataSettings.profile_threads default: what the server gives the profiler
DATA_DIR = RESULTS / "datasets"

IN_PROCESS = """
import json, sys, time
from pathlib import Path
from armillary.data.profiling.profiler import profile
t0 = time.perf_counter()
result = profile(Path(sys.argv[1]), "csv")
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "rows": result["row_count"]}))
"""


def generate(path: Path, rows: int) -> None:
    import polars as pl

    row = pl.col("row")
    cities = dict(
        enumerate(
            [
                "Lisbon",
                "Porto",
                "Oslo",
                "Bergen",
                "Lyon",
                "Nice",
                "Graz",
                "Linz",
                "Turku",
                "Espoo",
                "Cork",
                "Galway",
            ]
        )
    )
    segments = dict(enumerate(["retail", "wholesale", "online", "partner"]))
    score = ((row.hash(5) % 2_000_000).cast(pl.Int64) - 1_000_000).cast(pl.Float64) / 10_000
    lf = (
        pl.LazyFrame()
        .select(pl.int_range(0, rows, dtype=pl.Int64).alias("row"))
        .select(
            id=row,
            qty=(row.hash(1) % 1000).cast(pl.Int64),
            code=(row.hash(2) % 100_000).cast(pl.Int64),
            price=(row.hash(3) % 10_000_000).cast(pl.Float64) / 100,
            ratio=(row.hash(4) % 1_000_000).cast(pl.Float64) / 1_000_000,
            score=pl.when(row.hash(9) % 100 == 0).then(None).otherwise(score),
            temp=((row.hash(6) % 100_000).cast(pl.Int64) - 50_000).cast(pl.Float64) / 100,
            weight=(row.hash(7) % 100_000).cast(pl.Float64) / 10,
            city=(row.hash(8) % 12).cast(pl.Int64).replace_strict(cities, return_dtype=pl.String),
            segment=(row.hash(10) % 4)
            .cast(pl.Int64)
            .replace_strict(segments, return_dtype=pl.String),
        )
    )
    partial = path.with_suffix(".partial")
    lf.sink_csv(partial)
    partial.rename(path)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str, int | None]:
    """Wall seconds, stdout and peak RSS (KiB) of one process run under /usr/bin/time -v."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        full = [str(TIME_BIN), "-v", "-o", report.name, *cmd] if TIME_BIN.exists() else cmd
        started = time.perf_counter()
        done = subprocess.run(
            full, capture_output=True, text=True, env=env, check=False, timeout=1800
        )
        wall = time.perf_counter() - started
        rss = max_rss_kib(Path(report.name).read_text()) if TIME_BIN.exists() else None
    if done.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout, rss


def contenders(path: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    polars_env = clean_env(POLARS_MAX_THREADS=PROFILE_THREADS)
    peer = str(BENCH_DIR / "pandas_peer.py")
    return {
        "armillary (python -m)": (
            [PYTHON, "-m", "armillary.data.profiling.profiler", str(path), "csv", "profile"],
            polars_env,
        ),
        "armillary (in-process)": ([PYTHON, "-c", IN_PROCESS, str(path)], polars_env),
        "pandas (C engine)": ([str(PANDAS_PYTHON), peer, str(path), "c"], clean_env()),
        "pandas (pyarrow engine)": ([str(PANDAS_PYTHON), peer, str(path), "pyarrow"], clean_env()),
    }


def run_one(name: str, cmd: list[str], env: dict[str, str], rows: int) -> dict[str, Any]:
    wall, out, rss = timed(cmd, env)
    answer = json.loads(out)
    result: dict[str, Any] = {"wall_s": wall, "peak_rss_mib": rss / 1024 if rss else None}
    if name == "armillary (python -m)":
        got = answer["row_count"]
        result["work_s"] = None
        result["means"] = {
            c["name"]: c.get("mean") for c in answer["columns"] if c.get("mean") is not None
        }
        result["top_values_columns"] = [c["name"] for c in answer["columns"] if "top_values" in c]
    elif name == "armillary (in-process)":
        got = answer["rows"]
        result["work_s"] = answer["seconds"]
    else:
        got = answer["rows"]
        result["work_s"] = answer["work_s"]
        result["phases"] = {k: answer[k] for k in ("import_s", "read_s", "describe_s", "nunique_s")}
        result["means"] = answer["means"]
    if got != rows:
        raise SystemExit(f"{name}: counted {got} rows, expected {rows}")
    return result


def check_agreement(best: dict[str, dict[str, Any]]) -> list[str]:
    """Armillary's and pandas' column means must agree: both read the same numbers."""
    ours = best["armillary (python -m)"].get("means", {})
    theirs = best["pandas (C engine)"].get("means", {})
    problems = []
    for name, value in theirs.items():
        if name not in ours:
            problems.append(f"{name}: no mean from Armillary")
        elif not math.isclose(ours[name], value, rel_tol=1e-9, abs_tol=1e-9):
            problems.append(f"{name}: Armillary {ours[name]} vs pandas {value}")
    return problems


def render(
    best: dict[str, dict[str, Any]],
    rows: int,
    size: int,
    reps: int,
    machine: dict[str, str],
    libs: dict[str, str],
    elapsed: float,
) -> tuple[str, dict[str, float]]:
    lines = [
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed:.0f} s in total; "
        f"{rows:,} rows x 10 columns, {size / 1e6:.0f} MB CSV, page-cached; best of {reps} runs each. "
        f"Machine: {machine['nproc']} cores, {machine['cpu']}, {machine['memory']}; Linux {machine['kernel']}; "
        f"Python {machine['python']}; " + ", ".join(f"{k} {v}" for k, v in libs.items()) + ".",
        "",
        "| contender | wall s (process) | rows/s (process) | in-process s | rows/s (in-process) | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in best.items():
        work = r.get("work_s")
        lines.append(
            f"| {name} | {r['wall_s']:.2f} | {rows / r['wall_s'] / 1e6:.2f} M | "
            + (f"{work:.2f} | {rows / work / 1e6:.2f} M" if work else "- | -")
            + f" | {r['peak_rss_mib']:.0f} |"
        )
    arm, arm_in = best["armillary (python -m)"], best["armillary (in-process)"]
    pd_c, pd_arrow = best["pandas (C engine)"], best["pandas (pyarrow engine)"]
    ratios = {
        "process_vs_pandas_c": pd_c["wall_s"] / arm["wall_s"],
        "in_process_vs_pandas_c": pd_c["work_s"] / arm_in["work_s"],
        "process_vs_pandas_pyarrow": pd_arrow["wall_s"] / arm["wall_s"],
        "in_process_vs_pandas_pyarrow": pd_arrow["work_s"] / arm_in["work_s"],
    }
    lines += [
        "",
        f"Ratios, Armillary rows/s over pandas rows/s (target >= {TARGET_RATIO:g}x pandas):",
        "",
        f"- vs pandas C engine, whole process: **{ratios['process_vs_pandas_c']:.2f}x** — "
        f"{'met' if ratios['process_vs_pandas_c'] >= TARGET_RATIO else 'NOT met'}; "
        f"in-process: {ratios['in_process_vs_pandas_c']:.2f}x",
        f"- vs pandas pyarrow engine, whole process: {ratios['process_vs_pandas_pyarrow']:.2f}x; "
        f"in-process: {ratios['in_process_vs_pandas_pyarrow']:.2f}x",
    ]
    for name in ("pandas (C engine)", "pandas (pyarrow engine)"):
        p = best[name]["phases"]
        lines.append(
            f"- {name} phases: import {p['import_s']:.2f} s, read_csv {p['read_s']:.2f} s, "
            f"describe {p['describe_s']:.2f} s, nunique {p['nunique_s']:.2f} s"
        )
    return "\n".join(lines) + "\n", ratios


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument(
        "--keep", action="store_true", help="keep the generated CSV for the next run"
    )
    args = parser.parse_args()
    if args.reps < 2:
        raise SystemExit("--reps must be at least 2")
    started = time.monotonic()
    libs = versions("polars")
    libs.update(ensure_pandas_venv())
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"profile_{args.rows}x10.csv"
    try:
        if not path.exists():
            print(f"generating {path}", flush=True)
            generate(path, args.rows)
        size = path.stat().st_size
        runs: dict[str, list[dict[str, Any]]] = {}
        for rep in range(1, args.reps + 1):
            for name, (cmd, env) in contenders(path).items():
                result = run_one(name, cmd, env, args.rows)
                runs.setdefault(name, []).append(result)
                print(
                    f"  rep {rep} {name:<26} {result['wall_s']:7.2f} s  peak RSS {result['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    best = {name: min(rs, key=lambda r: r["wall_s"]) for name, rs in runs.items()}
    problems = check_agreement(best)
    if problems:
        raise SystemExit("Armillary and pandas disagree:\n" + "\n".join(problems))
    machine = machine_info()
    elapsed = time.monotonic() - started
    report, ratios = render(best, args.rows, size, args.reps, machine, libs, elapsed)
    (RESULTS / "datasets_profile.md").write_text(report)
    (RESULTS / "datasets_profile.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "versions": libs,
                "rows": args.rows,
                "size_bytes": size,
                "elapsed_s": elapsed,
                "ratios": ratios,
                "runs": runs,
            },
            indent=2,
        )
    )
    print()
    print(report)


if __name__ == "__main__":
    main()
