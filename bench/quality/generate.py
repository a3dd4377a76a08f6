"""Writes the benchmark table: ROWS rows x 10 columns from a seeded numpy generator, as Parquet.

    bench/.venvs/quality/bin/python bench/quality/generate.py ROWS PATH

Runs in the peers' venv (numpy is not a dependency of the project). All 12 checks pass on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from spec import COUNTRIES, EMAIL_DOMAINS, NOW, SCORE_NULL_SHARE, SEED, STATUSES


def generate(rows: int, path: Path) -> None:
    rng = np.random.default_rng(SEED)
    ids = rng.permutation(rows).astype(np.int64) + 1
    amount = np.round(rng.lognormal(mean=4.0, sigma=1.0, size=rows), 2).clip(0, 999_999)
    discount = np.round(amount * rng.uniform(0, 0.3, size=rows), 2)
    score = rng.uniform(0, 1, size=rows)
    nulls = rng.uniform(0, 1, size=rows) < SCORE_NULL_SHARE
    seconds_ago = rng.integers(0, 30 * 86_400, size=rows)
    created = np.datetime64(NOW, "us") - seconds_ago.astype("timedelta64[s]").astype(
        "timedelta64[us]"
    )
    user = rng.integers(1, 200_000, size=rows)
    frame = pl.DataFrame(
        {
            "id": ids,
            "user_id": user.astype(np.int64),
            "age": rng.integers(18, 91, size=rows).astype(np.int64),
            "amount": amount,
            "discount": discount,
            "score": pl.Series(score).set(pl.Series(nulls), None),
            "country": pl.Series(np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), size=rows)]),
            "status": pl.Series(np.array(STATUSES)[rng.integers(0, len(STATUSES), size=rows)]),
            "domain": pl.Series(np.array(EMAIL_DOMAINS)[rng.integers(0, 3, size=rows)]),
            "created_at": pl.Series(created),
        }
    )
    frame = frame.with_columns(
        email=pl.format("user.{}@{}", pl.col("user_id"), pl.col("domain"))
    ).select(
        "id",
        "user_id",
        "age",
        "amount",
        "discount",
        "score",
        "country",
        "status",
        "email",
        "created_at",
    )
    partial = path.with_suffix(".partial")
    frame.write_parquet(partial)
    partial.rename(path)


if __name__ == "__main__":
    generate(int(sys.argv[1]), Path(sys.argv[2]))
