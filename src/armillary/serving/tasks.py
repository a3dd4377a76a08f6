"""The task types ``deploy`` and ``batch_predict`` (contracts in
:mod:`armillary.contracts.serving`).

They run in a worker's task child and reach the platform only through the API with the job's
token (DESIGN §2): ``deploy`` reads and reconfigures a deployment; ``batch_predict`` fetches
the upstream table and the model version's artifact, scores the table with the serving
runtime, writes ``artifacts_dir/table.parquet`` and stores it as a dataset version.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import polars as pl

from armillary.contracts.data_tasks import TABLE_FILE, ColumnInfo, TableRef
from armillary.contracts.registry import MODEL_FILE_ONNX, MODEL_FILE_SKOPS, RegisterOutputs
from armillary.contracts.serving import (
    PREDICTION_COLUMN,
    PROBABILITY_PREFIX,
    BatchPredictOutputs,
    BatchPredictParams,
    DeployOutputs,
    DeployParams,
)
from armillary.contracts.tasks import TaskContext
from armillary.contracts.training import FeatureSpec, Signature
from armillary.kit import tabular
from armillary.sdk.task_api import TaskApi, TaskApiError

# Replaced by tests: the transport to the API.
_api_transport: httpx.BaseTransport | None = None

#: The request fields of a variant (a deployment's answer adds resolved ones).
_VARIANT_FIELDS = ("name", "model", "version", "alias", "weight", "shadow")
_PROGRESS_SECONDS = 2.0


class ServingTaskError(Exception):
    """A serving task cannot proceed (a missing input, deployment or model file)."""


def _segment(value: str | int) -> str:
    return quote(str(value), safe="")


class ServingApi(TaskApi):
    """:class:`TaskApi` plus the deployment calls the serving tasks make."""

    def __enter__(self) -> ServingApi:
        return self

    def _deployments(self) -> str:
        return f"/api/v1/projects/{self._project}/deployments"

    def get_deployment(self, name: str) -> dict[str, Any] | None:
        """The deployment ``name`` with its resolved variants, or None when it does not
        exist."""
        try:
            return self._json("GET", f"{self._deployments()}/{_segment(name)}")
        except TaskApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create_deployment(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("POST", self._deployments(), json=dict(body))

    def update_deployment(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._json("PUT", f"{self._deployments()}/{_segment(name)}", json=dict(body))


def _api(context: TaskContext, timeout: float = 60.0) -> ServingApi:
    return ServingApi(context, timeout=timeout, transport=_api_transport)


def _upstream(inputs: Mapping[str, Any], name: str, what: str) -> Mapping[str, Any]:
    found = inputs.get(name)
    if not isinstance(found, Mapping):
        raise ServingTaskError(f"`{name}` must be a direct upstream task (in `needs`) {what}")
    return found


# -- deploy ----------------------------------------------------------------------------------


def scaled_variants(
    current: Sequence[Mapping[str, Any]], new: Mapping[str, Any], *, weight: float
) -> list[dict[str, Any]]:
    """The variants after deploying ``new``: it replaces any variant of its name; as a shadow
    it also replaces the other shadow and leaves the weights alone; otherwise it takes
    ``weight`` percent and the other non-shadow variants share ``100 - weight`` in the
    proportions they had."""
    kept = [
        {k: v[k] for k in _VARIANT_FIELDS if k in v}
        for v in current
        if v.get("name") != new["name"] and not (new["shadow"] and v.get("shadow"))
    ]
    if not new["shadow"]:
        others = [v for v in kept if not v.get("shadow")]
        total = sum(float(v.get("weight", 0.0)) for v in others)
        for variant in others:
            share = float(variant.get("weight", 0.0)) / total if total > 0 else 0.0
            variant["weight"] = round(share * (100.0 - weight), 6)
    variants = [*kept, {**new, "weight": weight if not new["shadow"] else 0.0}]
    if not any(not v.get("shadow") and float(v.get("weight", 0.0)) > 0 for v in variants):
        raise ServingTaskError(
            "the deployment would have no variant that answers (every non-shadow weight is 0)"
        )
    return variants


def run_deploy(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Puts the upstream registration's version into a deployment (creating it if asked)."""
    spec = DeployParams.model_validate(params)
    registered = RegisterOutputs.model_validate(
        _upstream(inputs, spec.registration, "of type register")
    )
    new = {
        "name": spec.variant,
        "model": registered.model,
        "version": registered.version,
        "alias": None,
        "shadow": spec.shadow,
    }
    reason = f"deployed by job {context.job_id} task {context.task}"
    created = False
    with _api(context) as api:
        current = api.get_deployment(spec.deployment)
        if current is None:
            if not spec.create:
                raise ServingTaskError(
                    f"deployment {spec.deployment!r} does not exist (set `create: true`)"
                )
            if spec.shadow:
                raise ServingTaskError(
                    f"deployment {spec.deployment!r} does not exist, and a shadow alone "
                    "cannot answer: deploy a non-shadow variant first"
                )
            body = {
                "name": spec.deployment,
                "description": reason,
                "routing": {"mode": "sticky"},
                "variants": [{**new, "weight": 100.0}],
            }
            try:
                answer = api.create_deployment(body)
                created = True
            except TaskApiError as exc:
                if exc.status != 409:
                    raise
                # Created meanwhile (a parallel job): reconfigure it instead.
                current = api.get_deployment(spec.deployment)
                if current is None:
                    raise
        if not created:
            assert current is not None  # noqa: S101 - either created or found above
            variants = scaled_variants(current.get("variants") or [], new, weight=spec.weight)
            answer = api.update_deployment(
                spec.deployment, {"variants": variants, "reason": reason}
            )
    mine: Mapping[str, Any] = next(
        (v for v in answer.get("variants") or [] if v.get("name") == spec.variant), {}
    )
    return DeployOutputs(
        deployment=spec.deployment,
        config_version=int(answer["config_version"]),
        variant=spec.variant,
        model=registered.model,
        model_version=registered.version,
        weight=float(mine.get("weight", 100.0 if created else spec.weight)),
        created=created,
    ).model_dump(mode="json")


# -- batch_predict ---------------------------------------------------------------------------


def primary_variant(deployment: Mapping[str, Any]) -> Mapping[str, Any]:
    """The non-shadow variant with the largest weight (the first of equals)."""
    answering = [
        v
        for v in deployment.get("variants") or []
        if not v.get("shadow") and float(v.get("weight", 0)) > 0
    ]
    if not answering:
        raise ServingTaskError(f"deployment {deployment.get('name')!r} has no answering variant")
    return max(answering, key=lambda v: float(v["weight"]))


def _resolve(
    api: ServingApi, spec: BatchPredictParams
) -> tuple[dict[str, Any], str | None, str | None]:
    """The version record to predict with, and the deployment variant it came from."""
    if spec.deployment is not None:
        deployment = api.get_deployment(spec.deployment)
        if deployment is None:
            raise ServingTaskError(f"deployment {spec.deployment!r} does not exist")
        variant = primary_variant(deployment)
        # The version serving now (an alias-following variant's too), as the API resolved it.
        version = (variant.get("resolved") or {}).get("model_version", variant.get("version"))
        if version is None:
            raise ServingTaskError(f"variant {variant.get('name')!r} resolves to no version")
        record = api.get_model_version(str(variant["model"]), int(version))
        return record, spec.deployment, str(variant["name"])
    assert spec.model is not None  # noqa: S101 - the params model guarantees one
    if spec.alias is not None:
        found = api.get_alias(spec.model, spec.alias)
        if found is None or found.get("version") is None:
            raise ServingTaskError(f"model {spec.model!r} has no alias {spec.alias!r}")
        return api.get_model_version(spec.model, int(found["version"])), None, None
    assert spec.version is not None  # noqa: S101 - the params model guarantees one
    return api.get_model_version(spec.model, spec.version), None, None


def _model_file(record: Mapping[str, Any]) -> tuple[str, str]:
    """The artifact to load (ONNX when the version has one) and its format."""
    artifacts = record.get("artifacts") or {}
    if MODEL_FILE_ONNX in artifacts:
        return MODEL_FILE_ONNX, "onnx"
    if MODEL_FILE_SKOPS in artifacts:
        return MODEL_FILE_SKOPS, "skops"
    raise ServingTaskError(
        f"model {record.get('model')!r} version {record.get('version')} has no model file"
    )


def feature_matrix(frame: pl.DataFrame, features: Sequence[FeatureSpec]) -> np.ndarray[Any, Any]:
    """The rows of ``frame`` as the model was trained on them (:mod:`armillary.kit.tabular`,
    which training uses too)."""
    try:
        return tabular.feature_matrix(frame, features)
    except tabular.MissingColumns as exc:
        raise ServingTaskError(f"the input table has no column(s) {exc}") from None


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _kept_columns(frame: pl.DataFrame, keep: list[str] | None) -> list[str]:
    if keep is None:
        clash = [
            c for c in frame.columns if c == PREDICTION_COLUMN or c.startswith(PROBABILITY_PREFIX)
        ]
        if clash:
            raise ServingTaskError(
                f"the input already has column(s) {', '.join(clash)}: list `keep_columns`"
            )
        return list(frame.columns)
    missing = [c for c in keep if c not in frame.columns]
    if missing:
        raise ServingTaskError(f"the input table has no column(s) {', '.join(missing)}")
    return keep


def predict_table(
    model: Any,
    frame: pl.DataFrame,
    signature: Signature,
    *,
    keep: list[str],
    probabilities: bool,
    batch_rows: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> pl.DataFrame:
    """``frame``'s ``keep`` columns with the model's ``prediction`` (and ``proba_<class>``
    columns), scoring ``batch_rows`` rows per call."""
    refuse_missing(frame, signature)
    outputs: list[Any] = []
    probas: list[dict[str, float]] = []
    has_probas = probabilities
    for offset in range(0, frame.height, batch_rows):
        batch = frame.slice(offset, batch_rows)
        prediction = model.predict(feature_matrix(batch, signature.inputs))
        outputs.extend(_plain(v) for v in prediction.outputs)
        if prediction.probabilities is None:
            has_probas = False
        elif has_probas:
            probas.extend(prediction.probabilities)
        if on_batch is not None:
            on_batch(min(offset + batch_rows, frame.height), frame.height)
    result = frame.select(keep)
    dtype = None if outputs else _empty_dtype(signature)
    result = result.with_columns(pl.Series(PREDICTION_COLUMN, outputs, dtype=dtype, strict=False))
    if has_probas and probas:
        classes = [str(c) for c in signature.classes] if signature.classes else list(probas[0])
        result = result.with_columns(
            [
                pl.Series(
                    f"{PROBABILITY_PREFIX}{label}",
                    [row.get(label) for row in probas],
                    dtype=pl.Float64,
                )
                for label in classes
            ]
        )
    return result


def refuse_missing(frame: pl.DataFrame, signature: Signature) -> None:
    """As predict does: a null (or NaN) in an input the signature marks neither nullable nor
    imputed fails the task, naming the first such row, rather than scoring it as nonsense."""
    for feature in signature.inputs:
        if feature.nullable or feature.imputed or feature.name not in frame.columns:
            continue
        column = frame.get_column(feature.name)
        missing = column.is_null()
        if column.dtype.is_float():
            missing = missing | column.is_nan().fill_null(False)
        if missing.any():
            raise ServingTaskError(
                f"row {missing.arg_max()} of the input table (column {feature.name!r}) is "
                "null, but the model takes no missing value there: its signature marks the "
                "column neither nullable nor imputed"
            )


def _empty_dtype(signature: Signature) -> pl.DataType:
    if signature.problem == "regression":
        return pl.Float64()
    classes = signature.classes or []
    if classes and all(isinstance(c, bool) for c in classes):
        return pl.Boolean()
    if classes and all(isinstance(c, int) for c in classes):
        return pl.Int64()
    if classes and all(isinstance(c, int | float) for c in classes):
        return pl.Float64()
    return pl.String()


def _load(key: str, path: Path, fmt: str, signature: dict[str, Any]) -> Any:
    # Imported here: the runtime pulls in onnxruntime and skops, which `deploy` never needs.
    from armillary.serving.runtime import load_model

    return load_model(key, path, fmt, signature)


def run_batch_predict(
    params: dict[str, Any], inputs: dict[str, dict[str, Any]], context: TaskContext
) -> dict[str, Any]:
    """Scores the upstream table and stores the predictions as a dataset version."""
    spec = BatchPredictParams.model_validate(params)
    upstream = _upstream(inputs, spec.input, "that produced a table")
    ref = upstream.get("table")
    if not isinstance(ref, Mapping):
        raise ServingTaskError(f"input {spec.input!r} produced no table (make it a data task)")
    work = context.workdir / "batch_predict"
    work.mkdir(parents=True, exist_ok=True)
    with _api(context) as api:
        sha = upstream.get("sha256")
        source = api.fetch_table(
            ref, work / "input.parquet", sha256=sha if isinstance(sha, str) else None
        )
        record, deployment, variant = _resolve(api, spec)
        model_name, number = str(record["model"]), int(record["version"])
        file_name, fmt = _model_file(record)
        model_path = api.fetch_model_artifact(model_name, number, file_name, work / file_name)
        signature = Signature.model_validate(record["signature"])
        model = _load(str(record["id"]), model_path, fmt, dict(record["signature"]))
        frame = pl.read_parquet(source)
        keep = _kept_columns(frame, spec.keep_columns)
        last = [0.0]

        def progress(done: int, total: int) -> None:
            # Best effort, and at most every few seconds: it only shows how far we got.
            if time.monotonic() - last[0] < _PROGRESS_SECONDS and done < total:
                return
            last[0] = time.monotonic()
            with contextlib.suppress(TaskApiError):
                api.report_progress(stage="predict", current=done, total=total)

        result = predict_table(
            model,
            frame,
            signature,
            keep=keep,
            probabilities=spec.probabilities,
            batch_rows=spec.batch_rows,
            on_batch=progress,
        )
        out = context.artifacts_dir / TABLE_FILE
        out.parent.mkdir(parents=True, exist_ok=True)
        result.write_parquet(out)
        upload = work / f"{spec.dataset}.parquet"
        upload.write_bytes(out.read_bytes())
        source_dataset = upstream.get("dataset")
        lineage = {
            "job_id": context.job_id,
            "task": context.task,
            "inputs": [spec.input],
            "source": dict(source_dataset) if isinstance(source_dataset, Mapping) else None,
            "model": model_name,
            "model_version": number,
            "model_version_id": str(record["id"]),
            "deployment": deployment,
            "variant": variant,
        }
        version = api.create_dataset_version(
            spec.dataset,
            upload,
            format="parquet",
            lineage=lineage,
            description=spec.description,
        )
    return BatchPredictOutputs(
        dataset=spec.dataset,
        version=int(version["number"]),
        created=bool(version.get("created", True)),
        table=TableRef(job_id=context.job_id, task=context.task, name=TABLE_FILE),
        rows=result.height,
        columns=[ColumnInfo(name=n, dtype=str(t)) for n, t in result.schema.items()],
        sha256=_sha256(out),
        model=model_name,
        model_version=number,
        deployment=deployment,
        variant=variant,
    ).model_dump(mode="json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
