"""Contracts of the data pipeline task types: ``ingest``, ``transform`` and ``write_dataset``.

Data moves between tasks as Parquet in the object store (DESIGN §7): a data task writes its
table to ``artifacts_dir/table.parquet``, the worker uploads it after success, and its outputs
carry a :class:`TableRef` that downstream tasks fetch through the API.

Nothing here is evaluated as Python: ``transform`` runs DuckDB SQL, or Polars steps whose
expressions are SQL expressions parsed by ``polars.sql_expr``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from .task_base import TaskTypeContract

#: Dataset names as the data service accepts them.
DATASET_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
#: Task names as workflow specs accept them (the names of upstream tasks).
TASK_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,63}$"
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^\x00-\x1f\x7f]+$"
#: The file a data task writes its output table to, inside its artifacts directory.
TABLE_FILE = "table.parquet"

DatasetName = Annotated[str, Field(pattern=DATASET_NAME_PATTERN)]
TaskName = Annotated[str, Field(pattern=TASK_NAME_PATTERN)]
ColumnName = Annotated[str, Field(min_length=1, max_length=255)]
Expression = Annotated[str, Field(min_length=1, max_length=10_000)]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


def table_name(task: str) -> str:
    """The SQL table name under which a transform sees the output of upstream ``task``."""
    return task.replace("-", "_")


# -- ingest ----------------------------------------------------------------------------------


class IngestParams(_Params):
    dataset: DatasetName | None = Field(
        default=None, description="A dataset of the project to read a version of"
    )
    version: Annotated[int, Field(ge=1)] | Literal["latest"] = Field(
        default="latest", description="The dataset's version number, or `latest`"
    )
    s3_uri: str | None = Field(
        default=None,
        pattern=S3_URI_PATTERN,
        max_length=2_048,
        description="An object `s3://bucket/key` the platform may read (presigned by the API)",
    )
    url: str | None = Field(
        default=None,
        max_length=2_048,
        description="An http(s) URL on the public internet (private addresses are refused)",
    )
    format: Literal["csv", "parquet", "jsonl", "json"] | None = Field(
        default=None, description="Guessed from the name or content type when absent"
    )
    max_bytes: int = Field(
        default=1024**3, ge=1, le=1024**4, description="Refuse sources larger than this"
    )
    timeout_seconds: float = Field(
        default=300.0, gt=0, le=86_400, description="Time limit of the whole download"
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("`url` must be an absolute http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ValueError("`url` must not carry credentials")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> IngestParams:
        given = [n for n in ("dataset", "s3_uri", "url") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one source: `dataset`, `s3_uri` or `url`")
        if self.dataset is None and self.version != "latest":
            raise ValueError("`version` applies only to a `dataset` source")
        return self


# -- transform -------------------------------------------------------------------------------


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilterStep(_Step):
    filter: Expression = Field(description="Keep rows where this SQL expression is true")


class WithColumnsStep(_Step):
    with_columns: dict[ColumnName, Expression] = Field(
        min_length=1, max_length=1_000, description="Column name -> SQL expression"
    )


class SelectStep(_Step):
    select: list[ColumnName] = Field(min_length=1, max_length=10_000)


class DropStep(_Step):
    drop: list[ColumnName] = Field(min_length=1, max_length=10_000)


class RenameStep(_Step):
    rename: dict[ColumnName, ColumnName] = Field(min_length=1, max_length=10_000)


class SortStep(_Step):
    sort: list[ColumnName] = Field(min_length=1, max_length=100)
    descending: bool = False


class LimitStep(_Step):
    limit: int = Field(ge=0)


_STEP_KEYS = ("filter", "with_columns", "select", "drop", "rename", "sort", "limit")


def _step_kind(value: Any) -> str | None:
    # A step is told by its key, so that an error names that step's fields rather than
    # every member of the union.
    keys = value.keys() if isinstance(value, dict) else value.model_fields_set
    for key in _STEP_KEYS:
        if key in keys:
            return key
    return None


PolarsStep = Annotated[
    Annotated[FilterStep, Tag("filter")]
    | Annotated[WithColumnsStep, Tag("with_columns")]
    | Annotated[SelectStep, Tag("select")]
    | Annotated[DropStep, Tag("drop")]
    | Annotated[RenameStep, Tag("rename")]
    | Annotated[SortStep, Tag("sort")]
    | Annotated[LimitStep, Tag("limit")],
    Discriminator(
        _step_kind,
        custom_error_type="invalid_step",
        custom_error_message=f"a step is an object with one of the keys {', '.join(_STEP_KEYS)}",
    ),
]


class TransformParams(_Params):
    inputs: list[TaskName] = Field(
        min_length=1,
        max_length=100,
        description="Upstream tasks whose tables the transform reads (named by task, `-` -> `_`)",
    )
    sql: str | None = Field(
        default=None,
        min_length=1,
        max_length=100_000,
        description="One DuckDB query; each input is a table named after its task",
    )
    polars: list[PolarsStep] | None = Field(
        default=None,
        min_length=1,
        max_length=1_000,
        description="Steps applied to the single input; expressions are SQL expressions",
    )

    @model_validator(mode="after")
    def _check(self) -> TransformParams:
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError("`inputs` must not name a task twice")
        if len({table_name(name) for name in self.inputs}) != len(self.inputs):
            raise ValueError("two `inputs` map to the same table name (`-` becomes `_`)")
        if (self.sql is None) == (self.polars is None):
            raise ValueError("give exactly one of `sql` or `polars`")
        if self.polars is not None and len(self.inputs) != 1:
            raise ValueError("`polars` steps apply to exactly one input; use `sql` to join")
        return self


# -- write_dataset ---------------------------------------------------------------------------


class WriteDatasetParams(_Params):
    input: TaskName = Field(description="The upstream task whose table becomes the version")
    dataset: DatasetName = Field(description="Dataset of the project (created if missing)")
    format: Literal["parquet", "csv"] = "parquet"
    description: str = Field(default="", max_length=10_000)


# -- outputs ---------------------------------------------------------------------------------


class TableRef(BaseModel):
    """Where a task's table is: ``GET /api/v1/jobs/{job_id}/tasks/{task}/artifacts/{name}``."""

    model_config = ConfigDict(extra="forbid")
    job_id: str
    task: str
    name: str


class ColumnInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dtype: str


class DatasetRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int


class TableOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: TableRef
    rows: int = Field(ge=0)
    columns: list[ColumnInfo]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the Parquet file")
    dataset: DatasetRef | None = Field(
        default=None, description="The dataset version read (ingest of a dataset only)"
    )


class WriteDatasetOutputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str
    version: int = Field(ge=1)
    created: bool = Field(description="False when identical bytes already were a version")
    table: TableRef
    rows: int = Field(ge=0)
    columns: list[ColumnInfo]
    sha256: str


INGEST = TaskTypeContract(
    name="ingest",
    description=(
        "Reads a table from a dataset version, an `s3://` object or an http(s) URL (CSV, "
        "Parquet, JSON Lines or JSON) and writes it as Parquet for downstream tasks."
    ),
    params=IngestParams,
    outputs=TableOutputs,
    reads_datasets=("dataset",),
    server_checks={"dataset": "dataset exists in the project"},
)
TRANSFORM = TaskTypeContract(
    name="transform",
    description=(
        "Transforms upstream tables with one DuckDB SQL query (no file or network access) or "
        "a list of Polars steps, and writes the result as Parquet."
    ),
    params=TransformParams,
    outputs=TableOutputs,
    input_params=("inputs",),
)
WRITE_DATASET = TaskTypeContract(
    name="write_dataset",
    description=(
        "Stores an upstream table as the next version of a project dataset, recording the "
        "job, task and inputs it came from."
    ),
    params=WriteDatasetParams,
    writes_datasets=("dataset",),
    outputs=WriteDatasetOutputs,
    input_params=("input",),
)

DATA_TASK_TYPES: dict[str, TaskTypeContract] = {
    c.name: c for c in (INGEST, TRANSFORM, WRITE_DATASET)
}
