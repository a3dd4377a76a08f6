"""The peers of the quality benchmark, run in bench/.venvs/quality (outside uv.lock).

    bench/.venvs/quality/bin/python bench/quality/peers.py {pandera|gx} PATH {big|small} REPS [FRAMES]

Same protocol as polars_side.py: loading is not timed; ``small`` validates FRAMES frames of 100
rows per repetition. Pandera validates the Polars frame with its Polars backend (``lazy=True``,
all checks collected); Great Expectations (GX Core 1.x, ephemeral context, the pandas data
source: GX has no Polars one) validates a pandas frame read from the same file.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spec import (
    AGE_MAX,
    AGE_MIN,
    AMOUNT_MAX,
    AMOUNT_MIN,
    COUNTRIES,
    EMAIL_PATTERN,
    FRESH_AFTER,
    MAX_NULL_RATIO,
    SCHEMA,
    STATUSES,
)

SMALL_ROWS = 100


def pandera() -> tuple[Callable[[Any], int], Callable[[Path], Any], dict[str, str]]:
    import pandera as pa_root
    import pandera.polars as pa
    import polars as pl
    from pandera.api.polars.types import PolarsData

    def row_count(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.len() >= 1)

    def fresh(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("created_at").max() >= FRESH_AFTER)

    def null_ratio(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("score").null_count() <= MAX_NULL_RATIO * pl.len())

    def sql(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col("discount") <= pl.col("amount"))

    dtypes = {
        "Int64": pl.Int64,
        "Float64": pl.Float64,
        "String": pl.String,
        "Datetime": pl.Datetime,
    }
    column_checks: dict[str, Any] = {
        "age": pa.Check.in_range(AGE_MIN, AGE_MAX),
        "amount": pa.Check.in_range(AMOUNT_MIN, AMOUNT_MAX),
        "country": pa.Check.isin(COUNTRIES),
        "status": pa.Check.isin(STATUSES),
        "email": pa.Check.str_matches(f"^(?:{EMAIL_PATTERN})$"),
    }
    columns = {
        name: pa.Column(
            dtypes[dtype],
            column_checks.get(name),
            nullable=name != "id",
            unique=name == "id",
        )
        for name, dtype in SCHEMA.items()
    }
    schema = pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(row_count, name="row_count"),
            pa.Check(fresh, name="freshness"),
            pa.Check(null_ratio, name="max_null_ratio"),
            pa.Check(sql, name="sql"),
        ],
        strict=True,
    )

    def run(frame: Any) -> int:
        try:
            schema.validate(frame, lazy=True)
        except pa_root.errors.SchemaErrors as exc:
            cases = exc.failure_cases.select("column", "check").unique()
            failed = {(str(col), str(chk)) for col, chk in cases.iter_rows()}
            return 12 - len(failed)
        return 12

    return run, pl.read_parquet, {"pandera": pa_root.__version__, "polars": pl.__version__}


def gx() -> tuple[Callable[[Any], int], Callable[[Path], Any], dict[str, str]]:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # No progress bars: drawing them is not validation work.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("bench")
    asset = source.add_dataframe_asset(name="table")
    batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(gx.ExpectationSuite(name="quality"))
    for expectation in [
        gxe.ExpectTableColumnsToMatchOrderedList(column_list=list(SCHEMA)),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeBetween(column="age", min_value=AGE_MIN, max_value=AGE_MAX),
        gxe.ExpectColumnValuesToBeBetween(
            column="amount", min_value=AMOUNT_MIN, max_value=AMOUNT_MAX
        ),
        gxe.ExpectColumnValuesToBeInSet(column="country", value_set=COUNTRIES),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=STATUSES),
        gxe.ExpectColumnValuesToMatchRegex(column="email", regex=f"^(?:{EMAIL_PATTERN})$"),
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnMaxToBeBetween(column="created_at", min_value=pd.Timestamp(FRESH_AFTER)),
        gxe.ExpectColumnValuesToNotBeNull(column="score", mostly=1 - MAX_NULL_RATIO),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="amount", column_B="discount", or_equal=True
        ),
    ]:
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="quality", data=batch, suite=suite)
    )

    def run(frame: Any) -> int:
        result = definition.run(batch_parameters={"dataframe": frame})
        return sum(1 for r in result.results if r.success)

    def load(path: Path) -> Any:
        return pd.read_parquet(path)

    return run, load, {"great_expectations": gx.__version__, "pandas": pd.__version__}


def main() -> None:
    contender, path, mode, reps = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    frames_wanted = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
    warnings.simplefilter("ignore")
    run, load, versions = pandera() if contender == "pandera" else gx()
    if mode == "defects":
        import polars as pl
        from defects import defective

        table = defective(pl.read_parquet(path))
        if contender == "gx":
            table = table.to_pandas()
        mode = "big"
    else:
        table = load(path)
    if mode == "small":
        if contender == "gx":
            frames = [
                table.iloc[i * SMALL_ROWS : (i + 1) * SMALL_ROWS].copy()
                for i in range(frames_wanted)
            ]
        else:
            frames = [
                table.slice(i * SMALL_ROWS, SMALL_ROWS).rechunk() for i in range(frames_wanted)
            ]
        del table
        for frame in frames[: min(50, len(frames))]:
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
    print(
        json.dumps(
            {
                "seconds": seconds,
                "calls": len(frames),
                "rows": sum(len(f) for f in frames),
                "checks_passed": sorted(passed),
                "versions": versions,
            }
        )
    )


if __name__ == "__main__":
    main()
