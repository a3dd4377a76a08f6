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
#: The Content-Type each format's object is stored with.
CONTENT_TYPES = {
    DatasetFormat.CSV: "text/csv",
    DatasetFormat.PARQUET: "application/vnd.apache.parquet",
    DatasetFormat.JSONL: "application/x-ndjson",
}
_PARQUET_MAGIC = b"PAR1"
_SNIFF_BYTES = 4096


def detect_format(declared: str | None, filename: str | None, path: Path) -> DatasetFormat:
    """The upload's format: the ``format`` field, else the file name's extension, else
    sniffed from the file's first bytes."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    return format_of(declared, filename, head)


def format_of(declared: str | None, filename: str | None, head: bytes) -> DatasetFormat:
    """:func:`detect_format` on the file's first bytes (``head``, up to 4 KiB)."""
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
    head = head[:_SNIFF_BYTES]
    if head.startswith(_PARQUET_MAGIC):
        return DatasetFormat.PARQUET
    if head.lstrip().startswith(b"{"):
        return DatasetFormat.JSONL
    return DatasetFormat.CSV
