"""A 100-row frame on which 10 of the 12 checks fail (all but schema and row count): every
contender must say so before its timings count. Polars only (in both venvs)."""

from __future__ import annotations

import polars as pl

EXPECTED_PASSED = 2


def defective(table: pl.DataFrame) -> pl.DataFrame:
    frame = table.head(100)
    row = pl.int_range(0, pl.len())

    def at(index: int, column: str, value: object) -> pl.Expr:
        return pl.when(row == index).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)

    first_id = frame.get_column("id")[0]
    return frame.with_columns(
        pl.when(row == 1)
        .then(None)
        .when(row == 2)
        .then(first_id)
        .otherwise(pl.col("id"))
        .alias("id"),
        at(3, "age", 200),
        at(4, "amount", -1.0),
        at(5, "country", "XX"),
        at(6, "status", "lost"),
        at(7, "email", "not an email"),
        pl.col("created_at") - pl.duration(days=400),
        pl.when(row % 2 == 0).then(None).otherwise(pl.col("score")).alias("score"),
        at(8, "discount", 10_000_000.0),
    ).with_columns(at(8, "amount", 5.0))
