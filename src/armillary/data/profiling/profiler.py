"""Reads a CSV, Parquet or JSON Lines file lazily and describes it.

Run as ``python -m armillary.data.profiling.profiler PATH FORMAT MODE`` (or without
arguments, which then come as one JSON list ``[PATH, FORMAT, MODE]`` on stdin); prints one
JSON object on stdout. ``check`` reads only the head (schema, format sanity); ``profile`` streams
the whole file: row count and per-column statistics in a few passes of bounded memory, so a
file larger than memory still profiles.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import polars as pl

HEAD_ROWS = 1000
TOP_VALUES = 5
HISTOGRAM_BINS = 10
# Above this many distinct values (estimated), top values are not computed: the group-by
# would need memory proportional to the distinct count.
TOP_VALUES_MAX_DISTINCT = 10_000
# Text files up to this size are parsed into memory once; larger ones are staged as Parquet.
DEFAULT_IN_MEMORY_MAX = 1024**3


class ProfileError(Exception):
    """The file does not match its format or cannot be read."""


def scan(path: Path, fmt: str) -> pl.LazyFrame:
    if fmt == "csv":
        return pl.scan_csv(path, infer_schema_length=10_000, raise_if_empty=True)
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "jsonl":
        return pl.scan_ndjson(path, infer_schema_length=10_000)
    raise ProfileError(f"unsupported format {fmt!r}")


def _schema(lf: pl.LazyFrame) -> list[dict[str, str]]:
    return [{"name": name, "dtype": str(dtype)} for name, dtype in lf.collect_schema().items()]


def check(path: Path, fmt: str) -> dict[str, Any]:
    """Schema from the head of the file; raises :class:`ProfileError` when it is unreadable."""
    try:
        lf = scan(path, fmt)
        head = lf.head(HEAD_ROWS).collect()
        schema = _schema(lf)
    except Exception as exc:
        raise ProfileError(_reason(exc, fmt)) from exc
    if not schema:
        raise ProfileError("the file has no columns")
    return {"schema": schema, "head_rows": head.height}


def _is_numeric(dtype: pl.DataType) -> bool:
    return dtype.is_numeric() and not isinstance(dtype, pl.Boolean)


def _orderable(dtype: pl.DataType) -> bool:
    return _is_numeric(dtype) or dtype.is_temporal() or isinstance(dtype, pl.String)


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    return str(value)


def _in_memory_limit() -> int:
    return int(os.environ.get("ARMILLARY_DATA_PROFILE_IN_MEMORY_MAX_BYTES", DEFAULT_IN_MEMORY_MAX))


@contextmanager
def _prepared(path: Path, fmt: str) -> Iterator[pl.LazyFrame]:
    """The data in a shape that is cheap to read several times.

    Text formats are parsed once: into memory when the file is small enough, otherwise
    streamed into a Parquet file beside it (bounded memory), so each later pass decodes only
    the columns it needs instead of parsing the text again. Parquet is read as it is.
    """
    if fmt == "parquet":
        yield scan(path, fmt)
        return
    if path.stat().st_size <= _in_memory_limit():
        yield scan(path, fmt).collect(engine="streaming").lazy()
        return
    fd, staged_name = tempfile.mkstemp(prefix=".profile-", suffix=".parquet", dir=path.parent)
    os.close(fd)
    staged = Path(staged_name)
    try:
        scan(path, fmt).sink_parquet(staged)
        yield pl.scan_parquet(staged)
    finally:
        staged.unlink(missing_ok=True)


def profile(path: Path, fmt: str) -> dict[str, Any]:
    result = check(path, fmt)
    try:
        with _prepared(path, fmt) as lf:
            return {**result, **_profile_prepared(lf)}
    except ProfileError:
        raise
    except Exception as exc:
        raise ProfileError(_reason(exc, fmt)) from exc


def _profile_prepared(lf: pl.LazyFrame) -> dict[str, Any]:
    schema = lf.collect_schema()
    columns = list(schema.items())
    stats = _first_pass(lf, columns)
    rows = int(stats["__rows"])
    numeric = {
        name: (stats[f"{i}__min"], stats[f"{i}__max"])
        for i, (name, dtype) in enumerate(columns)
        if _is_numeric(dtype) and stats[f"{i}__min"] is not None
    }
    histograms = _histograms(lf, numeric)
    top_values = _top_values(
        lf,
        [
            name
            for i, (name, dtype) in enumerate(columns)
            if not dtype.is_float() and int(stats[f"{i}__distinct"]) <= TOP_VALUES_MAX_DISTINCT
        ],
    )
    profiles = []
    for i, (name, dtype) in enumerate(columns):
        distinct = int(stats[f"{i}__distinct"])
        column: dict[str, Any] = {
            "name": name,
            "dtype": str(dtype),
            "null_count": int(stats[f"{i}__nulls"]),
            "distinct_estimate": distinct,
        }
        if _orderable(dtype):
            column["min"] = _json_value(stats[f"{i}__min"])
            column["max"] = _json_value(stats[f"{i}__max"])
        if _is_numeric(dtype):
            column["mean"] = _json_value(stats[f"{i}__mean"])
            column["std"] = _json_value(stats[f"{i}__std"])
            column["histogram"] = histograms.get(name)
        if name in top_values:
            column["top_values"] = top_values[name]
        profiles.append(column)
    return {"row_count": rows, "columns": profiles}


def _first_pass(lf: pl.LazyFrame, columns: list[tuple[str, pl.DataType]]) -> dict[str, Any]:
    aggs: list[pl.Expr] = [pl.len().alias("__rows")]
    for i, (name, dtype) in enumerate(columns):
        col = pl.col(name)
        aggs += [
            col.null_count().alias(f"{i}__nulls"),
            col.approx_n_unique().alias(f"{i}__distinct"),
        ]
        if _orderable(dtype):
            aggs += [col.min().alias(f"{i}__min"), col.max().alias(f"{i}__max")]
        if _is_numeric(dtype):
            aggs += [col.mean().alias(f"{i}__mean"), col.std().alias(f"{i}__std")]
    frame = lf.select(aggs).collect(engine="streaming")
    return frame.row(0, named=True)


def _histograms(lf: pl.LazyFrame, ranges: dict[str, tuple[Any, Any]]) -> dict[str, dict[str, Any]]:
    """Equal-width bin counts per numeric column: a group-by on the bin index (at most
    HISTOGRAM_BINS groups, so bounded memory), all columns' queries run together."""
    names = list(ranges)
    edges: dict[str, list[float]] = {}
    queries = []
    for name in names:
        low, high = float(ranges[name][0]), float(ranges[name][1])
        width = (high - low) / HISTOGRAM_BINS or 1.0
        edges[name] = [low + k * width for k in range(HISTOGRAM_BINS + 1)]
        # Bin index per value, the top edge folded into the last bin.
        index = ((pl.col(name).cast(pl.Float64) - low) / width).floor().clip(0, HISTOGRAM_BINS - 1)
        queries.append(
            lf.select(index.cast(pl.Int32).alias("bin")).drop_nulls().group_by("bin").len()
        )
    out: dict[str, dict[str, Any]] = {}
    for name, frame in zip(names, pl.collect_all(queries, engine="streaming"), strict=True):
        counts = [0] * HISTOGRAM_BINS
        for bin_index, count in frame.iter_rows():
            counts[int(bin_index)] = int(count)
        out[name] = {"edges": edges[name], "counts": counts}
    return out


def _top_values(lf: pl.LazyFrame, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    queries = [
        lf.group_by(name)
        .agg(pl.len().alias("count"))
        .sort(["count", name], descending=[True, False], nulls_last=True)
        .head(TOP_VALUES)
        for name in names
    ]
    frames = pl.collect_all(queries, engine="streaming") if queries else []
    return {
        name: [{"value": _json_value(v), "count": int(c)} for v, c in frame.iter_rows()]
        for name, frame in zip(names, frames, strict=True)
    }


def _reason(exc: Exception, fmt: str) -> str:
    # Polars messages can quote file paths; keep only the first line, without any path.
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    label = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON Lines"}.get(fmt, fmt)
    for token in first.split():
        if "/" in token:
            first = first.replace(token, "<file>")
    return f"not a valid {label} file: {first[:300]}"


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        path, fmt, mode = Path(argv[1]), argv[2], argv[3]
    else:
        # Started ahead of its file (runner.ProfilerProcess): the arguments come on stdin.
        line = sys.stdin.readline()
        if not line:
            return 1
        raw_path, fmt, mode = json.loads(line)
        path = Path(raw_path)
    try:
        result = check(path, fmt) if mode == "check" else profile(path, fmt)
    except ProfileError as exc:
        sys.stdout.write(json.dumps({"error": str(exc)}))
        return 2
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
