"""Implementations of the data task types ``ingest``, ``transform`` and ``write_dataset``.

Their contracts are in :mod:`armillary.contracts.data_tasks`. They run in a worker's task child
and reach the platform only through :class:`~armillary.sdk.task_api.TaskApi` (DESIGN §2). Each
table-producing task writes ``artifacts_dir/table.parquet``, which the worker uploads after
success; downstream tasks fetch it by the ``table`` reference in the outputs (DESIGN §7).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import duckdb
import httpx
import polars as pl

from armillary.contracts.data_tasks import (
    TABLE_FILE,
    ColumnInfo,
    DatasetRef,
    FilterStep,
    IngestParams,
    LimitStep,
    RenameStep,
    SelectStep,
    SortStep,
    TableOutputs,
    TableRef,
    TransformParams,
    WithColumnsStep,
    WriteDatasetOutputs,
    WriteDatasetParams,
    table_name,
)
from armillary.contracts.tasks import TaskContext
from armillary.kit.egress import PROXY_ENV
from armillary.sdk.task_api import TaskApi
from armillary.sdk.task_log import TaskLog, names, plain_url, size

from .ingest.ssrf import (
    FetchFailed,
    FetchTimeout,
    IngestError,
    allow_rules_from_env,
    fetch_url,
    stream_to_file,
)
from .table_lineage import table_lineage

# Replaced by tests: the transport to the API, and to the object store's presigned URLs.
_api_transport: httpx.BaseTransport | None = None
_presigned_transport: httpx.BaseTransport | None = None

_BY_SUFFIX = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}
_BY_CONTENT_TYPE = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/parquet": "parquet",
    "application/x-ndjson": "jsonl",
    "application/ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json": "json",
}
_CSV_INFER_ROWS = 10_000


class DataTaskError(Exception):
    """A data task cannot proceed (a missing input, an unreadable source, a bad query)."""


def _api(context: TaskContext, timeout: float = 60.0) -> TaskApi:
    return TaskApi(context, timeout=timeout, transport=_api_transport)


def _log(task_type: str, context: TaskContext) -> TaskLog:
    return TaskLog(task_type, hide=[context.token()])


def _workdir(context: TaskContext, name: str) -> Path:
    path = context.workdir / name
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- ingest ----------------------------------------------------------------------------------


def run_ingest(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Reads a dataset version, an ``s3://`` object or an http(s) URL into ``table.parquet``."""
    spec = IngestParams.model_validate(params)
    log = _log("ingest", context)
    work = _workdir(context, "ingest")
    dataset: DatasetRef | None = None
    with log.stage("fetch"):
        if spec.dataset is not None:
            with _api(context, spec.timeout_seconds) as api:
                path, meta = api.fetch_dataset_version(spec.dataset, spec.version, work)
            if path.stat().st_size > spec.max_bytes:
                raise IngestError(
                    f"the dataset version is larger than max_bytes ({spec.max_bytes})"
                )
            fmt = spec.format or str(meta["format"])
            dataset = DatasetRef(name=spec.dataset, version=int(meta["number"]))
            log(
                f"source: dataset {spec.dataset} version {dataset.version} "
                f"(sha256 {meta['sha256']})"
            )
        elif spec.s3_uri is not None:
            log(f"source: {spec.s3_uri}")
            with _api(context, spec.timeout_seconds) as api:
                url = api.presign_external(spec.s3_uri)
            path, content_type = _fetch_presigned(url, work / "source", spec)
            fmt = spec.format or guess_format(urlsplit(spec.s3_uri).path, content_type, path)
        else:
            assert spec.url is not None  # noqa: S101 - the params model guarantees one source
            log(f"source: {plain_url(spec.url)}")
            # A user's URL: through the SSRF guard, with the operator's allow rules if any.
            result = fetch_url(
                spec.url,
                work / "source",
                max_bytes=spec.max_bytes,
                timeout=spec.timeout_seconds,
                allow=allow_rules_from_env(),
                # In a sandbox, the only way out: the worker's proxy checks each host too.
                proxy=os.environ.get(PROXY_ENV),
            )
            path = result.path
            fmt = spec.format or guess_format(
                urlsplit(result.url).path, result.content_type, result.path
            )
        log(f"read {size(path.stat().st_size)} as {fmt}")
    out = context.artifacts_dir / TABLE_FILE
    with log.stage("convert"):
        _convert_to_parquet(path, fmt, out)
    outputs = _table_outputs(out, context, dataset)
    log(f"rows out: {_shape(out)}")
    return outputs


def _fetch_presigned(url: str, dest: Path, spec: IngestParams) -> tuple[Path, str | None]:
    """GET a URL the platform presigned (its own object store): no SSRF guard, since the
    platform chose the host, but the same size and time limits. The URL carries a signature,
    so it appears in no message."""
    deadline = time.monotonic() + spec.timeout_seconds
    try:
        with (
            httpx.Client(
                transport=_presigned_transport,
                proxy=os.environ.get(PROXY_ENV) if _presigned_transport is None else None,
                trust_env=False,
                follow_redirects=False,
                timeout=httpx.Timeout(spec.timeout_seconds),
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise FetchFailed(f"the object store answered {response.status_code}")
            stream_to_file(
                response.iter_bytes(1024 * 1024),
                dest,
                max_bytes=spec.max_bytes,
                deadline=deadline,
                declared_length=response.headers.get("Content-Length"),
            )
            return dest, response.headers.get("Content-Type")
    except httpx.TimeoutException:
        raise FetchTimeout("the object did not arrive within the time limit") from None
    except httpx.HTTPError as exc:
        raise FetchFailed(f"reading the object failed: {type(exc).__name__}") from None


def guess_format(name: str, content_type: str | None, path: Path) -> str:
    """The format of a source: from its name's suffix, its content type, or its first bytes."""
    suffix = Path(name).suffix.lower()
    if suffix in _BY_SUFFIX:
        return _BY_SUFFIX[suffix]
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in _BY_CONTENT_TYPE:
        return _BY_CONTENT_TYPE[media]
    with path.open("rb") as handle:
        head = handle.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    return "csv"


def _convert_to_parquet(source: Path, fmt: str, out: Path) -> None:
    """Read ``source`` as ``fmt`` and write it as Parquet (streaming where Polars can)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        if fmt == "csv":
            pl.scan_csv(source, infer_schema_length=_CSV_INFER_ROWS).sink_parquet(out)
        elif fmt == "parquet":
            pl.scan_parquet(source).sink_parquet(out)
        elif fmt == "jsonl":
            pl.scan_ndjson(source, infer_schema_length=_CSV_INFER_ROWS).sink_parquet(out)
        elif fmt == "json":
            pl.read_json(source).write_parquet(out)
        else:
            raise DataTaskError(f"unsupported format {fmt!r}")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        out.unlink(missing_ok=True)
        raise DataTaskError(f"could not read the source as {fmt}: {exc}") from None


# -- transform -------------------------------------------------------------------------------


def run_transform(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Runs one DuckDB query, or Polars steps, over upstream tables into ``table.parquet``."""
    spec = TransformParams.model_validate(params)
    log = _log("transform", context)
    work = _workdir(context, "inputs")
    tables: dict[str, Path] = {}
    with log.stage("fetch"), _api(context) as api:
        for name in spec.inputs:
            tables[name] = _fetch_input(api, inputs, name, work)
            log(f"rows in from {name}: {_shape(tables[name])}")
    out = context.artifacts_dir / TABLE_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    if spec.sql is not None:
        log(f"query: one DuckDB SQL query over {names(table_name(n) for n in tables)}")
        with log.stage("query"):
            frame = run_sql(spec.sql, {table_name(n): p for n, p in tables.items()})
            frame.write_parquet(out)
    else:
        assert spec.polars is not None  # noqa: S101 - the params model guarantees one
        log(f"steps: {names(_step_name(step) for step in spec.polars)}")
        with log.stage("steps"):
            steps = apply_steps(pl.scan_parquet(tables[spec.inputs[0]]), spec.polars)
            steps.sink_parquet(out)
    outputs = _table_outputs(out, context)
    log(f"rows out: {_shape(out)}")
    return outputs


def _fetch_input(api: TaskApi, inputs: Mapping[str, Any], name: str, work: Path) -> Path:
    upstream = inputs.get(name)
    if not isinstance(upstream, Mapping) or not isinstance(upstream.get("table"), Mapping):
        raise DataTaskError(
            f"input {name!r} is not an upstream task that produced a table "
            "(name it in `needs`, and make it a data task)"
        )
    sha256 = upstream.get("sha256")
    dest = work / f"{table_name(name)}.parquet"
    return api.fetch_table(
        upstream["table"], dest, sha256=sha256 if isinstance(sha256, str) else None
    )


def run_sql(sql: str, tables: Mapping[str, Path]) -> pl.DataFrame:
    """The result of ``sql`` over the Parquet files ``tables`` (table name -> file).

    The files are loaded into an in-memory database first; then file, network and extension
    access is switched off and the configuration locked, so the query itself reads nothing
    but those tables (``read_csv('/etc/passwd')`` fails with ``duckdb.PermissionException``).
    """
    con = duckdb.connect(":memory:")
    try:
        # Python replacement scans would let a query read this process's variables.
        con.execute("SET python_enable_replacements = false")
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET allow_community_extensions = false")
        for name, path in tables.items():
            quoted = '"' + name.replace('"', '""') + '"'
            load = f"CREATE TABLE {quoted} AS SELECT * FROM read_parquet(?)"  # noqa: S608
            con.execute(load, [str(path)])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        relation = con.sql(sql)
        if relation is None:
            raise DataTaskError("the SQL must end with a query that returns rows")
        # Through the Arrow C stream interface (no pyarrow needed).
        return pl.DataFrame(relation)
    finally:
        con.close()


def _step_name(step: Any) -> str:
    # The step's key (``filter``, ``select``, ...): its expressions stay out of the log.
    return str(next(iter(type(step).model_fields)))


def apply_steps(frame: pl.LazyFrame, steps: Sequence[Any]) -> pl.LazyFrame:
    """``frame`` after each step; expressions are SQL, parsed by ``polars.sql_expr``."""
    for step in steps:
        if isinstance(step, FilterStep):
            frame = frame.filter(pl.sql_expr(step.filter))
        elif isinstance(step, WithColumnsStep):
            frame = frame.with_columns(
                [pl.sql_expr(expr).alias(name) for name, expr in step.with_columns.items()]
            )
        elif isinstance(step, SelectStep):
            frame = frame.select(step.select)
        elif isinstance(step, RenameStep):
            frame = frame.rename(step.rename)
        elif isinstance(step, SortStep):
            # Ties keep their input order: the same input gives the same output (and the
            # same content hash) every time, not whatever order the threads finished in.
            frame = frame.sort(step.sort, descending=step.descending, maintain_order=True)
        elif isinstance(step, LimitStep):
            frame = frame.limit(step.limit)
        else:
            frame = frame.drop(step.drop)
    return frame


# -- write_dataset ---------------------------------------------------------------------------


def run_write_dataset(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Stores the upstream table as the next version of a dataset, with its lineage."""
    spec = WriteDatasetParams.model_validate(params)
    log = _log("write_dataset", context)
    work = _workdir(context, "write")
    with _api(context) as api:
        with log.stage("fetch"):
            table = _fetch_input(api, inputs, spec.input, work)
            log(f"rows in from {spec.input}: {_shape(table)}")
        if spec.format == "csv":
            upload = work / f"{spec.dataset}.csv"
            pl.scan_parquet(table).sink_csv(upload)
        else:
            upload = work / f"{spec.dataset}.parquet"
            table.replace(upload)
            table = upload
        with log.stage("lineage"):
            lineage = table_lineage(api, context, spec.input)
            _log_lineage(log, lineage)
        with log.stage("upload"):
            version = api.create_dataset_version(
                spec.dataset,
                upload,
                format=spec.format,
                lineage=lineage,
                description=spec.description,
            )
        created = bool(version.get("created", True))
        log(
            f"wrote {size(upload.stat().st_size)} as {spec.format}: dataset {spec.dataset} "
            f"version {version['number']} (sha256 {version.get('sha256')})"
            + ("" if created else ", identical bytes were already that version")
        )
    rows, columns = _describe(table)
    return WriteDatasetOutputs(
        dataset=spec.dataset,
        version=int(version["number"]),
        created=created,
        table=TableRef.model_validate(inputs[spec.input]["table"]),
        rows=rows,
        columns=columns,
        sha256=_sha256(table),
    ).model_dump(mode="json")


def _log_lineage(log: TaskLog, lineage: Mapping[str, Any]) -> None:
    workflow = lineage["workflow"]
    sources = [
        f"{d['dataset']} version {d['version']} (sha256 {d['sha256']}, read by {d['task']})"
        for d in lineage["datasets"]
    ]
    log(
        f"lineage: job {lineage['job_id']}, workflow {workflow['name']} version "
        f"{workflow['version']}, task {lineage['task']}; source datasets: "
        + (names(sources) or "none (no dataset version was ingested upstream)")
    )


# -- outputs ---------------------------------------------------------------------------------


def _table_outputs(
    path: Path, context: TaskContext, dataset: DatasetRef | None = None
) -> dict[str, Any]:
    rows, columns = _describe(path)
    return TableOutputs(
        table=TableRef(job_id=context.job_id, task=context.task, name=path.name),
        rows=rows,
        columns=columns,
        sha256=_sha256(path),
        dataset=dataset,
    ).model_dump(mode="json", exclude_none=True)


def _shape(path: Path) -> str:
    """``150 rows, 5 columns: a (Float64), b (String), ...`` of a Parquet file."""
    rows, columns = _describe(path)
    listed = [f"{c.name} ({c.dtype})" for c in columns]
    return f"{rows} rows, {len(listed)} columns: {names(listed)}"


def _describe(path: Path) -> tuple[int, list[ColumnInfo]]:
    schema = pl.read_parquet_schema(path)
    rows = int(pl.scan_parquet(path).select(pl.len()).collect().item())
    return rows, [ColumnInfo(name=name, dtype=str(dtype)) for name, dtype in schema.items()]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
