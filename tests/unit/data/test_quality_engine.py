"""The quality engine on real data: scikit-learn's bundled iris measurements, written to CSV and
read back with Polars. Every check passes on the clean file and catches one injected defect."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from pydantic import ValidationError
from sklearn.datasets import load_iris  # type: ignore[import-untyped]

from armillary.contracts.quality import (
    CheckResult,
    QualityGateFailed,
    QualityReport,
    ValidateParams,
)
from armillary.contracts.tasks import TaskContext
from armillary.data.quality import task as quality_task
from armillary.data.quality.engine import validate_frame

BASE = datetime(2024, 3, 1, 12, 0, 0)
NOW = (BASE + timedelta(days=1)).isoformat()
SPECIES = ["setosa", "versicolor", "virginica"]

CHECKS: dict[str, Any] = {
    "schema": {
        "type": "schema",
        "columns": {
            "id": "Int64",
            "sepal_length": "Float64",
            "petal_width": "Float",
            "species": "String",
            "measured_at": "Datetime",
        },
    },
    "not_null": {"type": "not_null", "column": "sepal_length"},
    "unique": {"type": "unique", "columns": ["id"]},
    "in_range": {"type": "in_range", "column": "sepal_length", "min": 4, "max": 8},
    "in_set": {"type": "in_set", "column": "species", "values": SPECIES},
    "regex": {"type": "regex", "column": "code", "pattern": r"IR-\d{4}"},
    "row_count": {"type": "row_count", "min": 100, "max": 1000},
    "freshness": {
        "type": "freshness",
        "column": "measured_at",
        "max_age_seconds": 86_400,
        "now": NOW,
    },
    "max_null_ratio": {"type": "max_null_ratio", "column": "petal_width", "max_ratio": 0.05},
    "sql": {"type": "sql", "predicate": "petal_length >= petal_width AND sepal_width > 0"},
    "drift": {"type": "drift", "columns": ["sepal_length", "species"]},
}


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The iris data set as a CSV file, with an id, a code, a species name and a timestamp."""
    bunch = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    frame = (
        pl.DataFrame(bunch.data, schema=names, orient="row")
        .with_columns(target=pl.Series(bunch.target))
        .with_row_index("id")
        .select(
            pl.col("id").cast(pl.Int64),
            pl.format("IR-{}", pl.col("id").cast(pl.String).str.zfill(4)).alias("code"),
            *names,
            pl.col("target").replace_strict(dict(enumerate(SPECIES))).alias("species"),
            (pl.lit(BASE) + pl.duration(minutes=pl.col("id"))).alias("measured_at"),
        )
    )
    path = tmp_path_factory.mktemp("iris") / "iris.csv"
    frame.write_csv(path)
    return path


def read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, try_parse_dates=True)


@pytest.fixture(scope="module")
def clean(iris_csv: Path) -> pl.DataFrame:
    return read(iris_csv)


def roundtrip(frame: pl.DataFrame, tmp_path: Path) -> pl.DataFrame:
    """The defect goes through a CSV file too, as an upload would."""
    path = tmp_path / "defect.csv"
    frame.write_csv(path)
    return read(path)


def set_value(frame: pl.DataFrame, column: str, row: int, value: Any) -> pl.DataFrame:
    index = pl.int_range(0, pl.len())
    return frame.with_columns(
        pl.when(index == row).then(pl.lit(value)).otherwise(pl.col(column)).alias(column)
    )


def one(report: QualityReport) -> CheckResult:
    assert_valid(report)
    assert len(report.checks) == 1
    return report.checks[0]


def assert_valid(report: QualityReport) -> None:
    """The engine builds reports without validation: they must still be valid JSON reports."""
    data = report.model_dump(mode="json")
    json.dumps(data, allow_nan=False)
    assert QualityReport.model_validate(data).model_dump(mode="json") == data


def seen(result: CheckResult) -> Any:
    """What the check observed (any JSON)."""
    return result.observed


def test_clean_file_passes_every_check(clean: pl.DataFrame) -> None:
    assert clean.height == 150
    report = validate_frame(clean, list(CHECKS.values()), reference=clean)
    failed = {c.name: c.observed for c in report.checks if not c.passed}
    assert failed == {}
    assert report.passed
    assert report.score == 1.0
    assert (report.rows, report.columns) == (150, 8)
    assert report.errors_failed == report.warnings_failed == 0
    names = [c.name for c in report.checks]
    assert names[:3] == ["schema", "not_null(sepal_length)", "unique(id)"]
    assert_valid(report)
    drift = report.checks[-1]
    assert drift.observed == {
        "sepal_length": {"psi": 0.0, "ks": 0.0},
        "species": {"psi": 0.0, "ks": None},
    }
    json.dumps(report.model_dump(mode="json"), allow_nan=False)


Defect = Callable[[pl.DataFrame], pl.DataFrame]


@pytest.mark.parametrize(
    ("check", "defect", "failing", "observed"),
    [
        pytest.param("not_null", lambda f: set_value(f, "sepal_length", 7, None), 1, 1, id="null"),
        pytest.param("unique", lambda f: set_value(f, "id", 10, 3), 1, 1, id="duplicate-key"),
        pytest.param(
            "in_range",
            lambda f: set_value(f, "sepal_length", 20, 42.0),
            1,
            {"min": 4.3, "max": 42.0},
            id="out-of-range",
        ),
        pytest.param(
            "in_set",
            lambda f: set_value(f, "species", 30, "unicorn"),
            1,
            {"unexpected_values": ["unicorn"]},
            id="unknown-category",
        ),
        pytest.param("regex", lambda f: set_value(f, "code", 40, "IR-12x4"), 1, 1, id="malformed"),
        pytest.param("row_count", lambda f: f.head(60), 40, 60, id="too-few-rows"),
        pytest.param(
            "max_null_ratio",
            lambda f: f.with_columns(
                pl.when(pl.col("id") % 10 == 0)
                .then(None)
                .otherwise("petal_width")
                .alias("petal_width")
            ),
            15,
            0.1,
            id="too-many-nulls",
        ),
        pytest.param(
            "sql",
            lambda f: set_value(f, "petal_width", 60, 9.5),
            1,
            1,
            id="predicate-violated",
        ),
    ],
)
def test_each_check_catches_its_defect(
    clean: pl.DataFrame,
    tmp_path: Path,
    check: str,
    defect: Defect,
    failing: int,
    observed: Any,
) -> None:
    spec = CHECKS[check]
    assert one(validate_frame(clean, [spec])).passed
    broken = roundtrip(defect(clean), tmp_path)
    report = validate_frame(broken, [spec], sample_size=5)
    assert_valid(report)
    result = one(report)
    assert not result.passed
    assert result.failing_count == failing
    assert result.observed == observed
    assert not report.passed
    assert report.errors_failed == 1
    assert report.score == 0.0
    if check != "row_count":
        assert result.failing_sample, "failing rows are sampled"


def test_samples_point_at_the_failing_rows(clean: pl.DataFrame, tmp_path: Path) -> None:
    broken = roundtrip(set_value(clean, "sepal_length", 7, None), tmp_path)
    assert one(validate_frame(broken, [CHECKS["not_null"]])).failing_sample == [
        {"row": 7, "values": {"sepal_length": None}}
    ]
    duplicated = roundtrip(set_value(clean, "id", 10, 3), tmp_path)
    result = one(validate_frame(duplicated, [CHECKS["unique"]]))
    assert [s["row"] for s in result.failing_sample] == [3, 10]
    violated = roundtrip(set_value(clean, "petal_width", 60, 9.5), tmp_path)
    result = one(validate_frame(violated, [CHECKS["sql"]]))
    assert result.columns == ["petal_length", "petal_width", "sepal_width"]
    assert result.failing_sample[0] == {
        "row": 60,
        "values": {"petal_length": 3.5, "petal_width": 9.5, "sepal_width": 2.0},
    }


def test_freshness_catches_stale_timestamps(clean: pl.DataFrame, tmp_path: Path) -> None:
    result = one(validate_frame(clean, [CHECKS["freshness"]]))
    assert result.passed
    newest = BASE + timedelta(minutes=149)
    assert result.observed == {
        "newest": newest.isoformat() + "+00:00",
        "age_seconds": (BASE + timedelta(days=1) - newest).total_seconds(),
    }
    stale = roundtrip(clean.with_columns(pl.col("measured_at") - pl.duration(days=30)), tmp_path)
    result = one(validate_frame(stale, [CHECKS["freshness"]], sample_size=2))
    assert not result.passed
    assert seen(result)["age_seconds"] > 30 * 86_400
    assert result.failing_count == 150
    assert [s["row"] for s in result.failing_sample] == [149, 148]  # the newest rows


def test_drift_catches_a_shifted_distribution(clean: pl.DataFrame, tmp_path: Path) -> None:
    shifted = roundtrip(clean.with_columns(pl.col("sepal_length") + 1.5), tmp_path)
    result = one(validate_frame(shifted, [CHECKS["drift"]], reference=clean))
    assert not result.passed
    assert result.failing_count == 1
    stats = seen(result)["sepal_length"]
    assert stats["psi"] > 0.2
    assert stats["ks"] > 0.1
    assert seen(result)["species"] == {"psi": 0.0, "ks": None}
    assert result.failing_sample == [{"column": "sepal_length", **stats}]
    assert result.threshold == {"psi": 0.2, "ks": 0.1}

    # A categorical shift: the batch is nearly all one species.
    skewed = roundtrip(pl.concat([clean.filter(pl.col("species") == "setosa")] * 3), tmp_path)
    result = one(validate_frame(skewed, [{"type": "drift", "column": "species"}], reference=clean))
    assert not result.passed
    assert seen(result)["species"]["psi"] > 1


def test_drift_on_few_distinct_values_sees_a_new_value(clean: pl.DataFrame) -> None:
    reference = clean.filter(pl.col("species") != "virginica").with_columns(
        pl.col("species").replace_strict({s: i for i, s in enumerate(SPECIES)}).alias("code_num")
    )
    current = clean.with_columns(
        pl.col("species").replace_strict({s: i for i, s in enumerate(SPECIES)}).alias("code_num")
    )
    result = one(
        validate_frame(current, [{"type": "drift", "column": "code_num"}], reference=reference)
    )
    assert seen(result)["code_num"]["psi"] > 0.2


def test_schema_reports_missing_mismatched_and_extra(clean: pl.DataFrame, tmp_path: Path) -> None:
    broken = roundtrip(
        clean.drop("measured_at").with_columns(pl.col("id").cast(pl.String) + "x"), tmp_path
    )
    result = one(validate_frame(broken, [CHECKS["schema"]]))
    assert not result.passed
    assert result.observed == {"missing": ["measured_at"], "mismatched": {"id": "String"}}
    assert result.failing_count == 2
    exact = {"type": "schema", "columns": {"id": "Int64", "code": "String"}, "exact": True}
    result = one(validate_frame(clean, [exact]))
    assert seen(result)["extra"] == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
        "species",
        "measured_at",
    ]
    families = {"type": "schema", "columns": {"id": "integer", "sepal_length": "Numeric"}}
    assert one(validate_frame(clean, [families])).passed


def test_warnings_do_not_fail_the_gate_and_score_counts_checks(
    clean: pl.DataFrame, tmp_path: Path
) -> None:
    broken = roundtrip(set_value(clean, "species", 30, "unicorn"), tmp_path)
    checks = [
        {**CHECKS["in_set"], "severity": "warn"},
        CHECKS["not_null"],
        CHECKS["unique"],
        CHECKS["row_count"],
    ]
    report = validate_frame(broken, checks)
    assert report.passed
    assert report.warnings_failed == 1
    assert report.errors_failed == 0
    assert report.score == 0.75
    checks.append({**CHECKS["regex"], "pattern": "XX-.*"})
    report = validate_frame(broken, checks)
    assert not report.passed
    assert (report.errors_failed, report.warnings_failed) == (1, 1)
    assert report.score == pytest.approx(3 / 5)


def test_samples_are_capped(clean: pl.DataFrame) -> None:
    everything_fails = {"type": "in_range", "column": "sepal_length", "max": 1}
    result = one(validate_frame(clean, [everything_fails], sample_size=3))
    assert result.failing_count == 150
    assert len(result.failing_sample) == 3
    assert (
        len(one(validate_frame(clean, [everything_fails], sample_size=10_000)).failing_sample)
        == 100
    )
    assert one(validate_frame(clean, [everything_fails], sample_size=0)).failing_sample == []
    with pytest.raises(ValidationError):
        ValidateParams.model_validate(
            {"input": "ingest", "checks": [everything_fails], "sample_size": 101}
        )


def test_an_empty_table(clean: pl.DataFrame) -> None:
    report = validate_frame(
        clean.head(0),
        [
            CHECKS[name]
            for name in (
                "not_null",
                "unique",
                "in_range",
                "in_set",
                "regex",
                "sql",
                "max_null_ratio",
                "row_count",
                "freshness",
            )
        ],
    )
    assert_valid(report)
    failed = [c.name for c in report.checks if not c.passed]
    assert failed == ["row_count", "freshness(measured_at)"]
    assert report.checks[-1].observed == {"newest": None, "age_seconds": None}


def test_a_check_that_cannot_run_fails_alone(clean: pl.DataFrame) -> None:
    checks = [
        {"type": "not_null", "column": "no_such_column"},
        {"type": "in_range", "column": "species", "min": 0},
        {"type": "regex", "column": "id", "pattern": "1.*"},
        {"type": "freshness", "column": "code", "max_age_seconds": 1},
        {"type": "sql", "predicate": "species > 3"},  # fails at run time: the fallback path
        CHECKS["unique"],
    ]
    report = validate_frame(clean, checks)
    assert_valid(report)
    assert [c.passed for c in report.checks] == [False, False, False, False, False, True]
    for result in report.checks[:5]:
        assert "error" in seen(result)
    assert report.checks[0].observed == {"error": "column 'no_such_column' not found"}
    drift = validate_frame(clean, [CHECKS["drift"]])  # no reference frame
    assert not one(drift).passed


def test_nan_and_dates_in_samples_are_json(clean: pl.DataFrame) -> None:
    frame = set_value(clean, "sepal_length", 5, float("nan"))
    result = one(validate_frame(frame, [CHECKS["in_range"]]))
    assert result.failing_sample == [{"row": 5, "values": {"sepal_length": "NaN"}}]
    report = validate_frame(
        clean, [{"type": "in_set", "column": "measured_at", "values": ["x"]}], sample_size=1
    )
    assert_valid(report)
    assert one(report).failing_sample[0]["values"] == {"measured_at": "2024-03-01T12:00:00"}


def test_params_are_checked() -> None:
    params = ValidateParams.model_validate(
        {"input": "ingest", "checks": list(CHECKS.values()), "reference": {"dataset": "iris"}}
    )
    assert params.reference is not None
    assert params.reference.version == "latest"
    bad = [
        {"checks": [CHECKS["drift"]]},  # drift without a reference
        {"checks": [{"type": "regex", "column": "a", "pattern": "("}]},
        {"checks": [{"type": "sql", "predicate": "a >"}]},
        {"checks": [{"type": "sql", "predicate": "read_csv('/etc/passwd')"}]},
        {"checks": [CHECKS["not_null"], CHECKS["not_null"]]},  # same name twice
        {"checks": [{"type": "in_range", "column": "a"}]},
        {"checks": [{"type": "bogus"}]},
        {"checks": []},
        {"checks": [{**CHECKS["not_null"], "extra": 1}]},
    ]
    for extra in bad:
        with pytest.raises(ValidationError):
            ValidateParams.model_validate({"input": "ingest", **extra})


def test_gate_failure_carries_the_report(clean: pl.DataFrame, tmp_path: Path) -> None:
    broken = roundtrip(set_value(clean, "id", 10, 3), tmp_path)
    report = validate_frame(broken, [CHECKS["unique"], {**CHECKS["regex"], "pattern": "Z"}])
    data = report.model_dump(mode="json")
    error = QualityGateFailed(data)
    assert error.report is data
    assert str(error) == "quality gate failed: 2 error check(s) failed: unique(id), regex(code)"


def test_validate_files_reads_table_and_reference(iris_csv: Path, tmp_path: Path) -> None:
    table = tmp_path / "table.parquet"
    shifted = read(iris_csv).with_columns(pl.col("sepal_length") * 1.3)
    shifted.write_parquet(table)
    params = {
        "input": "ingest",
        "checks": [CHECKS["not_null"], {**CHECKS["drift"], "severity": "warn"}],
        "reference": {"dataset": "iris", "version": 1},
    }
    report = quality_task.validate_files(table, params, iris_csv, reference_format="csv")
    assert report.passed
    assert report.warnings_failed == 1
    jsonl = tmp_path / "ref.jsonl"
    read(iris_csv).write_ndjson(jsonl)
    report = quality_task.validate_files(table, params, jsonl, reference_format="jsonl")
    assert report.warnings_failed == 1
    with pytest.raises(ValueError, match="unsupported format"):
        quality_task.read_table(table, "xlsx")


def test_report_json_shortens_samples_to_fit(clean: pl.DataFrame) -> None:
    report = validate_frame(
        clean, [{"type": "in_range", "column": "sepal_length", "max": 1}], sample_size=100
    )
    data = quality_task.report_json(report, budget=3_000)
    assert len(json.dumps(data)) <= 3_000
    assert 0 < len(data["checks"][0]["failing_sample"]) < 100


class FakeApi:
    """The task API without HTTP: files on disk, reports kept."""

    posted: list[tuple[str, int, dict[str, Any]]] = []

    def __init__(self, context: TaskContext, *, table: Path, reference: Path) -> None:
        self.table, self.reference = table, reference

    def __enter__(self) -> FakeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def fetch_table(self, ref: dict[str, Any], dest: Path, *, sha256: str | None = None) -> Path:
        assert ref == {"job_id": "j", "task": "ingest", "name": "table"}
        assert sha256 is None
        return self.table

    def fetch_dataset_version(
        self, dataset: str, version: int | str, dest_dir: Path
    ) -> tuple[Path, dict[str, Any]]:
        assert (dataset, version) == ("iris", "latest")
        return self.reference, {"number": 1, "format": "csv"}

    def put_quality(self, dataset: str, version: int, report: dict[str, Any]) -> None:
        self.posted.append((dataset, version, report))


@pytest.mark.parametrize("defective", [False, True])
def test_run_validate(
    iris_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defective: bool
) -> None:
    import armillary.sdk.task_api as task_api

    frame = read(iris_csv)
    if defective:
        frame = set_value(frame, "species", 3, "unicorn")
    table = tmp_path / "table.parquet"
    frame.write_parquet(table)
    FakeApi.posted = []
    monkeypatch.setattr(
        task_api, "TaskApi", lambda context: FakeApi(context, table=table, reference=iris_csv)
    )
    context = TaskContext(
        job_id="j",
        project_id="p",
        task="check",
        attempt_id="a",
        workdir=tmp_path,
        artifacts_dir=tmp_path / "artifacts",
        api_url="http://127.0.0.1:9",
    )
    ref = {"job_id": "j", "task": "ingest", "name": "table"}
    inputs = {"ingest": {"table": ref, "rows": 150, "dataset": {"name": "iris", "version": 2}}}
    params = {
        "input": "ingest",
        "checks": [CHECKS["in_set"], CHECKS["drift"]],
        "reference": {"dataset": "iris"},
    }
    if defective:
        with pytest.raises(QualityGateFailed) as caught:
            quality_task.run_validate(params, inputs, context)
        assert caught.value.report["passed"] is False
        assert FakeApi.posted == [("iris", 2, caught.value.report)]
        return
    outputs = quality_task.run_validate(params, inputs, context)
    assert outputs["passed"] is True
    assert outputs["score"] == 1.0
    assert outputs["table"] == ref
    assert outputs["rows"] == 150
    assert FakeApi.posted == [("iris", 2, outputs["report"])]
    # Without a dataset behind the table, nothing is posted; a missing input is an error.
    FakeApi.posted = []
    quality_task.run_validate(params, {"ingest": {"table": ref}}, context)
    assert FakeApi.posted == []
    with pytest.raises(ValueError, match="not one of"):
        quality_task.run_validate({**params, "input": "other"}, inputs, context)
