"""Which of the supported formats an upload is: declared, from its name, or sniffed."""

from __future__ import annotations

from pathlib import Path

from armillary.kit.errors import BadRequest

from .schemas import DatasetFormat

_BY_EXTENSION = {
    ".csv": DatasetFormat.CSV,
    ".parquet": DatasetFormat.PARQUET,
    ".pq": DatasetFormat.PARQUET,
    ".jsonl": DatasetFormat.JSONL,
    ".ndjson": DatasetFormat.JSONL,
}
_PARQUET_MAGIC = b"PAR1"


def detect_format(declared: str | None, filename: str | None, path: Path) -> DatasetFormat:
    if declared:
        try:
            return DatasetFormat(declared.strip().lower())
        except ValueError as exc:
            raise BadRequest("'format' must be one of csv, parquet, jsonl") from exc
    if filename:
        suffix = Path(filename).suffix.lower()
        if suffix in _BY_EXTENSION:
            return _BY_EXTENSION[suffix]
        if suffix:
            raise BadRequest(
                f"Files ending in {suffix!r} are not supported: upload CSV, Parquet or JSON Lines"
            )
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(_PARQUET_MAGIC):
        return DatasetFormat.PARQUET
    if head.lstrip().startswith(b"{"):
        return DatasetFormat.JSONL
    return DatasetFormat.CSV
