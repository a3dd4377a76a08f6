"""The pandas peer of the profiling benchmark; runs in bench/.venvs/pandas, not in .venv.

    bench/.venvs/pandas/bin/python bench/datasets/pandas_peer.py PATH [c|pyarrow]

``pd.read_csv`` + ``df.describe(include="all")`` + ``df.nunique()``; prints one JSON object.
"""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()
import pandas as pd  # noqa: E402


def main(path: str, engine: str) -> None:
    imported = time.perf_counter()
    df = pd.read_csv(path, engine=engine)
    read = time.perf_counter()
    described = df.describe(include="all")
    describe = time.perf_counter()
    distinct = df.nunique()
    nunique = time.perf_counter()
    means = {
        str(name): float(described.loc["mean", name])
        for name in described.columns
        if pd.api.types.is_numeric_dtype(df[name])
    }
    print(
        json.dumps(
            {
                "rows": len(df),
                "columns": len(df.columns),
                "import_s": imported - started,
                "read_s": read - imported,
                "describe_s": describe - read,
                "nunique_s": nunique - describe,
                "work_s": nunique - imported,
                "means": means,
                "nunique": {str(k): int(v) for k, v in distinct.items()},
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "c")
