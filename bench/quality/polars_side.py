"""Armillary's engine and the same 12 checks as hand-written Polars, in the project's .venv.

    .venv/bin/python bench/quality/polars_side.py {armillary|polars} PATH {big|small} REPS [FRAMES]

``big``: the whole table, one validation per repetition. ``small``: FRAMES frames of 100 rows
(slices of the table), all validated in each repetition (fixed cost per call). Loading the
Parquet file is not timed. Prints one JSON object: seconds per repetition and checks passed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spec import (
    AGE_MAX,
    AGE_MIN,
    AMOUNT_MAX,
    AMOUNT_MIN,
    CHECKS,
    COUNTRIES,
    EMAIL_PATTERN,
    FRESH_AFTER,
    MAX_NULL_RATIO,
    SCHEMA,
    STATUSES,
)

SMALL_ROWS = 100


def armillary() -> Callable[[pl.DataFrame], int]:
    from armillary.data.quality.engine import parse_check, validate_frame

    checks = [parse_check(c) for c in CHECKS]  # parsed once, as the task does

    def run(frame: pl.DataFrame) -> int:
        report = validate_frame(frame, checks)
        return sum(c.passed for c in report.checks)

    return run


def plain_polars() -> Callable[[pl.DataFrame], int]:
    """The 12 checks written by hand as one select: the floor an engine can hope for."""
    countries = pl.Series(COUNTRIES)
    statuses = pl.Series(STATUSES)
    pattern = f"^(?:{EMAIL_PATTERN})$"

    def run(frame: pl.DataFrame) -> int:
        schema = frame.schema
        schema_ok = list(schema) == list(SCHEMA) and all(
            schema[name].base_type().__name__ == dtype for name, dtype in SCHEMA.items()
        )
        (
            id_nulls,
            id_distinct,
            age_out,
            amount_out,
            country_out,
            status_out,
            email_bad,
            rows,
            newest,
            score_nulls,
            sql_bad,
        ) = frame.select(
            pl.col("id").null_count(),
            pl.col("id").n_unique().alias("id_distinct"),
            (~pl.col("age").is_between(AGE_MIN, AGE_MAX)).sum().alias("age_out"),
            (~pl.col("amount").is_between(AMOUNT_MIN, AMOUNT_MAX)).sum().alias("amount_out"),
            (~pl.col("country").is_in(countries.implode())).sum().alias("country_out"),
            (~pl.col("status").is_in(statuses.implode())).sum().alias("status_out"),
            (~pl.col("email").str.contains(pattern)).sum().alias("email_bad"),
            pl.len(),
            pl.col("created_at").max(),
            pl.col("score").null_count().alias("score_nulls"),
            (~(pl.col("discount") <= pl.col("amount"))).sum().alias("sql_bad"),
        ).row(0)
        results = [
            schema_ok,
            id_nulls == 0,
            id_distinct - (1 if id_nulls else 0) == rows - id_nulls,  # n_unique counts null
            age_out == 0,
            amount_out == 0,
            country_out == 0,
            status_out == 0,
            email_bad == 0,
            rows >= 1,
            newest is not None and newest >= FRESH_AFTER,
            (score_nulls / rows if rows else 0.0) <= MAX_NULL_RATIO,
            sql_bad == 0,
        ]
        return sum(results)

    return run


def main() -> None:
    contender, path, mode, reps = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    frames_wanted = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    run = armillary() if contender == "armillary" else plain_polars()
    table = pl.read_parquet(path)
    if mode == "defects":
        from defects import defective

        table = defective(table)
        mode = "big"
    if mode == "small":
        frames = [table.slice(i * SMALL_ROWS, SMALL_ROWS) for i in range(frames_wanted)]
        frames = [f.rechunk() for f in frames]
        del table
        for frame in frames[:50]:  # warm-up: first-call costs (regex compile, imports)
            run(frame)
    else:
        frames = [table]
    seconds: list[float] = []
    passed: set[int] = set()
    for _ in range(reps):
        started = time.perf_counter()
        for frame in frames:
            passed.add(run(frame))
        seconds.append(time.perf_counter() - started)
    out: dict[str, Any] = {
        "seconds": seconds,
        "calls": len(frames),
        "rows": sum(f.height for f in frames),
        "checks_passed": sorted(passed),
        "versions": {"polars": pl.__version__},
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
