"""Benchmark: Armillary's data-quality engine against hand-written Polars, Pandera and GX.

    .venv/bin/python bench/quality/run.py        (make bench-quality)

The same 12 checks (bench/quality/spec.py: schema, not-null, unique, 2 ranges, 2 sets, regex,
row count, freshness, null ratio, a SQL row predicate) on a seeded numpy table of 10 columns
(3 int, 3 float with 1 % nulls in one, 3 strings, 1 datetime), at 1 M and 10 M rows, and on
1,000 frames of 100 rows (the fixed cost of a call). Contenders, each in its own process
under ``/usr/bin/time -v`` (peak RSS), one repetition per process, the order rotated between
repetitions; medians of ``--reps`` (3). Loading the Parquet file is not timed.

  armillary      ``validate_frame`` (.venv)
  plain polars   the 12 checks hand-written as one ``select`` (.venv): the floor
  pandera        Pandera's Polars backend, ``lazy=True`` (bench/.venvs/quality)
  gx             Great Expectations (GX Core 1.x), ephemeral context, pandas data source
                 (GX has no Polars source), progress bars off (bench/.venvs/quality)

The peers' venv (outside uv.lock) is made here when missing: ``python3 -m venv`` + pip from
PyPI, the only network use; telemetry off (GX_ANALYTICS_ENABLED=false, DO_NOT_TRACK=1). It
also generates the data (numpy is not a project dependency). Before timing, every contender
must find the same 10 failures on a defective 100-row frame.

Targets: Armillary rows/s >= 0.8x plain Polars and >= 3x GX; <= 1 ms fixed overhead per call
(Armillary's time per small call minus plain Polars'). Results: bench/results/quality.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "datasets"))

from common import (  # noqa: E402
    PYTHON,
    REPO,
    RESULTS,
    TIME_BIN,
    clean_env,
    machine_info,
    max_rss_kib,
)

VENV = REPO / "bench" / ".venvs" / "quality"
PEER_PYTHON = VENV / "bin" / "python"
PEER_REQS = ["great_expectations>=1.0,<2", "pandera[polars]", "pandas", "pyarrow", "numpy"]
DATA_DIR = RESULTS / "quality"
CONTENDERS = ("armillary", "plain polars", "pandera", "gx")
TARGET_VS_POLARS = 0.8
TARGET_VS_GX = 3.0
TARGET_OVERHEAD_MS = 1.0
EXPECTED_PASSED_ON_DEFECTS = 2
QUIET = {"GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}


def polars_version() -> str:
    from importlib.metadata import version

    return version("polars")


def ensure_venv() -> None:
    """The peers' venv, with the project's Polars version so Pandera runs on the same engine."""
    reqs = [*PEER_REQS, f"polars=={polars_version()}"]
    probe = "import great_expectations, pandera.polars, pandas, numpy, pyarrow, polars"
    if not PEER_PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["python3", "-m", "venv", str(VENV)], check=True, env=clean_env(**QUIET))
    done = subprocess.run(
        [str(PEER_PYTHON), "-c", probe], capture_output=True, check=False, env=clean_env(**QUIET)
    )
    if done.returncode != 0:
        subprocess.run(
            [str(PEER_PYTHON), "-m", "pip", "install", "--quiet", *reqs],
            check=True,
            env=clean_env(**QUIET),
        )


def command(contender: str, path: Path, mode: str, frames: int) -> list[str]:
    if contender in ("armillary", "plain polars"):
        name = "armillary" if contender == "armillary" else "polars"
        return [PYTHON, str(HERE / "polars_side.py"), name, str(path), mode, "1", str(frames)]
    return [str(PEER_PYTHON), str(HERE / "peers.py"), contender, str(path), mode, "1", str(frames)]


def run_once(cmd: list[str], timeout: float) -> dict[str, Any]:
    report = DATA_DIR / "time.txt"
    full = [str(TIME_BIN), "-v", "-o", str(report), *cmd] if TIME_BIN.exists() else cmd
    done = subprocess.run(
        full, capture_output=True, text=True, env=clean_env(**QUIET), timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{cmd[1:4]} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    rss = max_rss_kib(report.read_text()) if TIME_BIN.exists() else None
    answer["peak_rss_mib"] = rss / 1024 if rss else None
    return answer


def generate(rows: int, keep: bool) -> Path:
    path = DATA_DIR / f"table_{rows}.parquet"
    if not path.exists():
        print(f"generating {path.name}", flush=True)
        subprocess.run(
            [str(PEER_PYTHON), str(HERE / "generate.py"), str(rows), str(path)],
            check=True,
            env=clean_env(**QUIET),
        )
    return path


def self_test(path: Path) -> None:
    for contender in CONTENDERS:
        answer = run_once(command(contender, path, "defects", 1), 600)
        if answer["checks_passed"] != [EXPECTED_PASSED_ON_DEFECTS]:
            raise SystemExit(
                f"{contender}: {answer['checks_passed']} checks passed on the defective frame, "
                f"expected {EXPECTED_PASSED_ON_DEFECTS}"
            )
    print("self-test: every contender finds the 10 defects", flush=True)


def measure(
    label: str,
    path: Path,
    mode: str,
    reps: int,
    frames: dict[str, int],
    skip: set[str],
    timeout: float,
) -> dict[str, dict[str, Any]]:
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in CONTENDERS if c not in skip}
    order = list(runs)
    for rep in range(reps):
        rotated = order[rep % len(order) :] + order[: rep % len(order)]
        for contender in rotated:
            try:
                answer = run_once(command(contender, path, mode, frames[contender]), timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"  {label} {contender}: {str(exc)[:300]}", flush=True)
                answer = {"error": str(exc)[:2000]}
            runs[contender].append(answer)
            if "error" not in answer:
                if answer["checks_passed"] != [12]:
                    raise SystemExit(f"{contender} failed checks on clean data: {answer}")
                print(
                    f"  {label} rep {rep + 1} {contender:<13} {answer['seconds'][0]:8.3f} s  "
                    f"peak RSS {answer['peak_rss_mib'] or 0:.0f} MiB",
                    flush=True,
                )
    summary: dict[str, dict[str, Any]] = {}
    for contender, answers in runs.items():
        good = [a for a in answers if "error" not in a]
        if not good:
            summary[contender] = {"error": answers[-1].get("error", "no run")}
            continue
        seconds = statistics.median(a["seconds"][0] for a in good)
        summary[contender] = {
            "median_s": seconds,
            "runs_s": [a["seconds"][0] for a in good],
            "rows": good[0]["rows"],
            "calls": good[0]["calls"],
            "rows_per_s": good[0]["rows"] / seconds,
            "ms_per_call": seconds / good[0]["calls"] * 1000,
            "peak_rss_mib": max((a["peak_rss_mib"] or 0) for a in good),
            "versions": good[0]["versions"],
        }
    return summary


def ratios(summary: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    ours = summary.get("armillary", {}).get("rows_per_s")

    def over(peer: str) -> float | None:
        theirs = summary.get(peer, {}).get("rows_per_s")
        return ours / theirs if ours and theirs else None

    return {
        "vs_plain_polars": over("plain polars"),
        "vs_pandera": over("pandera"),
        "vs_gx": over("gx"),
    }


def fmt_ratio(value: float | None, target: float | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}x"
    if target is not None:
        text = f"**{text}** ({'met' if value >= target else 'NOT met'})"
    return text


def render(results: dict[str, Any], machine: dict[str, str], elapsed: float, reps: int) -> str:
    versions: dict[str, str] = {}
    for block in results["blocks"].values():
        for entry in block["summary"].values():
            versions.update(entry.get("versions", {}))
    lines = [
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed / 60:.0f} min in total; "
        f"medians of {reps} runs, one process per run, order rotated. Machine: "
        f"{machine['nproc']} cores, {machine['cpu']}, {machine['memory']}; Linux {machine['kernel']}; "
        f"Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + ".",
        "",
    ]
    for label, block in results["blocks"].items():
        summary = block["summary"]
        small = block["mode"] == "small"
        lines += [
            f"### {label}",
            "",
            "| contender | median s | runs s | "
            + ("calls | ms per call | " if small else "")
            + "rows/s | peak RSS MiB |",
            "|---|---:|---|" + ("---:|---:|" if small else "") + "---:|---:|",
        ]
        for contender in CONTENDERS:
            entry = summary.get(contender)
            if entry is None:
                lines.append(f"| {contender} | skipped | | " + ("| | " if small else "") + "| |")
                continue
            if "error" in entry:
                lines.append(
                    f"| {contender} | failed: {entry['error'][:80]} | | "
                    + ("| | " if small else "")
                    + "| |"
                )
                continue
            runs = ", ".join(f"{s:.3f}" for s in entry["runs_s"])
            lines.append(
                f"| {contender} | {entry['median_s']:.3f} | {runs} | "
                + (f"{entry['calls']} | {entry['ms_per_call']:.3f} | " if small else "")
                + f"{entry['rows_per_s'] / 1e6:.2f} M | {entry['peak_rss_mib']:.0f} |"
            )
        r = block["ratios"]
        if small:
            lines += [
                "",
                f"Armillary calls/s over: plain Polars {fmt_ratio(r['vs_plain_polars'])}; "
                f"GX {fmt_ratio(r['vs_gx'])}; Pandera {fmt_ratio(r['vs_pandera'])}.",
            ]
        else:
            lines += [
                "",
                f"Armillary rows/s over: plain Polars "
                f"{fmt_ratio(r['vs_plain_polars'], TARGET_VS_POLARS)} (target >= "
                f"{TARGET_VS_POLARS}x); GX {fmt_ratio(r['vs_gx'], TARGET_VS_GX)} (target >= "
                f"{TARGET_VS_GX:g}x); Pandera {fmt_ratio(r['vs_pandera'])}.",
            ]
        if small and "overhead_ms" in block:
            overhead = block["overhead_ms"]
            lines.append(
                f"Fixed overhead per call (Armillary minus plain Polars): **{overhead:.3f} ms** "
                f"({'met' if overhead <= TARGET_OVERHEAD_MS else 'NOT met'}; target <= {TARGET_OVERHEAD_MS:g} ms)."
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000", help="rows of the big tables")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--frames", type=int, default=1000, help="small frames per run")
    parser.add_argument(
        "--gx-frames",
        type=int,
        default=100,
        help="small frames per GX run (about 0.2 s each: 1,000 x 3 runs would take 10 minutes)",
    )
    parser.add_argument("--gx-max-rows", type=int, default=10_000_000, help="skip GX above this")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    parser.add_argument("--keep", action="store_true", help="keep the generated tables")
    args = parser.parse_args()
    started = time.monotonic()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    ensure_venv()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    smallest = min(sizes)
    if smallest < args.frames * 100:
        raise SystemExit(f"the smallest table must have at least {args.frames * 100} rows")
    paths = {rows: generate(rows, args.keep) for rows in sizes}
    results: dict[str, Any] = {"blocks": {}, "args": vars(args)}
    try:
        self_test(paths[smallest])
        everyone = {c: 1 for c in CONTENDERS}
        for rows in sizes:
            label = f"{rows:,} rows x 10 columns"
            skip = {"gx"} if rows > args.gx_max_rows else set()
            summary = measure(label, paths[rows], "big", args.reps, everyone, skip, args.timeout)
            results["blocks"][label] = {
                "mode": "big",
                "summary": summary,
                "ratios": ratios(summary),
            }
        label = f"{args.frames:,} frames of 100 rows (GX: {args.gx_frames})"
        frames = {c: args.frames for c in CONTENDERS} | {"gx": args.gx_frames}
        summary = measure(label, paths[smallest], "small", args.reps, frames, set(), args.timeout)
        block: dict[str, Any] = {"mode": "small", "summary": summary}
        # Per call, not per row: GX validates fewer frames.
        per_call = {c: e["ms_per_call"] for c, e in summary.items() if "ms_per_call" in e}
        block["ratios"] = {
            "vs_plain_polars": per_call["plain polars"] / per_call["armillary"],
            "vs_pandera": per_call["pandera"] / per_call["armillary"]
            if "pandera" in per_call
            else None,
            "vs_gx": per_call["gx"] / per_call["armillary"] if "gx" in per_call else None,
        }
        block["overhead_ms"] = per_call["armillary"] - per_call["plain polars"]
        results["blocks"][label] = block
    finally:
        if not args.keep:
            for path in paths.values():
                path.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    machine = machine_info()
    report = render(results, machine, elapsed, args.reps)
    (RESULTS / "quality.md").write_text(report)
    (RESULTS / "quality.json").write_text(
        json.dumps({"machine": machine, "elapsed_s": elapsed, **results}, indent=2)
    )
    print()
    print(report)


if __name__ == "__main__":
    main()
