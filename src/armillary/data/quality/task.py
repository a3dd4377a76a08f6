"""The ``validate`` task type: checks an upstream task's table and fails closed.

``run_validate`` downloads the table (and, for drift checks, the reference dataset version)
through the task API, runs :func:`validate_files`, records the report on the dataset version
the table came from (when it came from one), and returns the report with the table passed
through for downstream tasks. When an ``error`` check failed it raises
:class:`QualityGateFailed` instead, after recording the report: the task fails closed and the
executor keeps the report from the exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from armillary.contracts.quality import QualityGateFailed, QualityReport, ValidateParams
from armillary.contracts.tasks import TaskContext

from .engine import validate_frame

# The report travels in the task's outputs (at most 1 MiB of JSON, with the other outputs)
# and to the data service: failing-row samples are cut to fit well inside that.
REPORT_BUDGET_BYTES = 512 * 1024
FORMATS = ("csv", "parquet", "jsonl")


def read_table(path: Path, fmt: str = "parquet") -> pl.DataFrame:
    """A CSV, Parquet or JSON Lines file as a frame."""
    if fmt == "parquet":
        return pl.read_parquet(path)
    if fmt == "csv":
        return pl.read_csv(path, infer_schema_length=10_000, try_parse_dates=True)
    if fmt == "jsonl":
        return pl.read_ndjson(path, infer_schema_length=10_000)
    raise ValueError(f"unsupported format {fmt!r}: expected one of {', '.join(FORMATS)}")


def validate_files(
    path: Path,
    params: ValidateParams | Mapping[str, Any],
    reference_path: Path | None = None,
    *,
    fmt: str = "parquet",
    reference_format: str = "parquet",
) -> QualityReport:
    """Validates the table at ``path`` (``fmt``) with the checks of ``params``; drift checks
    compare against the file at ``reference_path`` (``reference_format``)."""
    spec = params if isinstance(params, ValidateParams) else ValidateParams.model_validate(params)
    frame = read_table(path, fmt)
    reference = read_table(reference_path, reference_format) if reference_path else None
    return validate_frame(frame, spec.checks, reference=reference, sample_size=spec.sample_size)


def report_json(report: QualityReport, budget: int = REPORT_BUDGET_BYTES) -> dict[str, Any]:
    """The report as JSON, failing-row samples shortened until it fits in ``budget`` bytes."""
    data = report.model_dump(mode="json")
    keep = max((len(c["failing_sample"]) for c in data["checks"]), default=0)
    while keep > 0 and len(json.dumps(data, allow_nan=False)) > budget:
        keep //= 2
        for check in data["checks"]:
            del check["failing_sample"][keep:]
    return data


def log_report(log: Callable[[str], None], source: str, report: QualityReport) -> None:
    """One line for the table, one per check, one for the verdict."""
    log(f"rows in from {source}: {report.rows} rows, {report.columns} columns")
    for check in report.checks:
        where = f" on {', '.join(check.columns)}" if check.columns else ""
        verdict = "passed" if check.passed else f"FAILED ({check.failing_count} failing rows)"
        observed = "" if check.observed is None else f", observed {_short(check.observed)}"
        log(f"check {check.name} [{check.severity}]{where}: {verdict}{observed}")
    log(
        f"result: {'passed' if report.passed else 'FAILED'}, score {report.score:.3g}, "
        f"{report.errors_failed} error and {report.warnings_failed} warning check(s) failed; "
        f"rows out: {report.rows}"
    )


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, allow_nan=True, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def run_validate(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """The ``validate`` task: see the module docstring."""
    from armillary.sdk.task_api import TaskApi
    from armillary.sdk.task_log import TaskLog

    spec = ValidateParams.model_validate(params)
    log = TaskLog("validate", hide=[context.token()])
    upstream = inputs.get(spec.input)
    if upstream is None:
        raise ValueError(f"input {spec.input!r} is not one of this task's inputs")
    table = upstream.get("table")
    if not isinstance(table, dict):
        raise ValueError(f"task {spec.input!r} produced no `table` to validate")
    workdir = Path(context.workdir) / "validate"
    with TaskApi(context) as api:
        digest = table.get("sha256")
        extra = {"sha256": digest} if isinstance(digest, str) else {}
        with log.stage("fetch"):
            path = api.fetch_table(table, workdir / "input.parquet", **extra)
            reference_path, reference_format = None, "parquet"
            if spec.reference is not None:
                reference_path, version = api.fetch_dataset_version(
                    spec.reference.dataset, spec.reference.version, workdir / "reference"
                )
                reference_format = str(version.get("format", "parquet"))
                log(f"reference: dataset {spec.reference.dataset} version {version['number']}")
        with log.stage("checks"):
            report = validate_files(path, spec, reference_path, reference_format=reference_format)
        log_report(log, spec.input, report)
        data = report_json(report)
        dataset = upstream.get("dataset")
        if isinstance(dataset, dict) and dataset.get("name") and dataset.get("version"):
            api.put_quality(str(dataset["name"]), int(dataset["version"]), data)
            log(f"report recorded on dataset {dataset['name']} version {dataset['version']}")
    if not report.passed:
        raise QualityGateFailed(data)
    return {
        "report": data,
        "passed": report.passed,
        "score": report.score,
        "table": table,
        "rows": report.rows,
    }
