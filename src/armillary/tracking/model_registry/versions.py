"""MLflow's ``create_model_version`` from a run's logged model: the run must be the
project's, its ``MLmodel`` must name a safe flavour (``mlmodel``), and the registry then
copies and checks the model file. The version carries the run's metrics and parameters."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from armillary.kit import run_job_link
from armillary.kit.authz import ProjectAccess
from armillary.kit.storage import ObjectNotFound

from ..artifacts.paths import join, proxied_path, relative_path
from ..artifacts.service import RunFiles
from ..components import Tracking
from ..runs import repository as runs_repository
from ..runs import service as runs
from ..wire import external_id, parse_id
from ..wire_errors import DoesNotExist, InvalidParameter
from . import mlmodel, registry_calls
from .shapes import CreateModelVersion

_RUNS_SCHEME = "runs:/"
_PROXY_SCHEME = "mlflow-artifacts:"
# The registry's metric names; a run's others (with "/" or spaces) are not carried.
_METRIC_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_METRICS = 200


@dataclass(frozen=True)
class ModelSource:
    run_ref: str
    experiment_ref: str | None
    path: str  # the model's directory among the run's artifacts


def parse_source(source: str) -> ModelSource:
    """``runs:/<run_id>/<path>`` or ``mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<path>``
    (what MLflow's client sends for a model logged under a run)."""
    if source.startswith(_RUNS_SCHEME):
        rest = relative_path(source[len(_RUNS_SCHEME) :])
        run_ref, _, path = rest.partition("/")
        if not run_ref or not path:
            raise InvalidParameter("source runs:/<run_id>/<path> names no model directory")
        return ModelSource(run_ref, None, path)
    if source.startswith(_PROXY_SCHEME):
        rest = source[len(_PROXY_SCHEME) :].lstrip("/")
        where = proxied_path(rest)
        if not where.path:
            raise InvalidParameter("source names the run's artifact root, not a model directory")
        return ModelSource(where.run_ref, where.experiment_ref, where.path)
    raise InvalidParameter(
        "source must be a model logged under a run of this project: "
        "runs:/<run_id>/<path> or mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<path>"
    )


def _metrics(latest: list[Any]) -> dict[str, float]:
    kept: dict[str, float] = {}
    for metric in sorted(latest, key=lambda m: m.key):
        if metric.is_nan or metric.value is None or not math.isfinite(metric.value):
            continue
        if _METRIC_KEY.fullmatch(metric.key) and len(kept) < _MAX_METRICS:
            kept[metric.key] = float(metric.value)
    return kept


def _job_link(tracking: Tracking, run: Any) -> dict[str, str]:
    """The run's job and task, sealed so the registry knows the link is this service's."""
    secret = tracking.runtime.settings.resolved_secret_key()
    sealed = run_job_link.seal(secret, run.project_id, run.id, run.job_id, run.task)
    return {"job_id": str(run.job_id), "task": run.task, "seal": sealed}


async def _mlmodel(tracking: Tracking, files: RunFiles, directory: str) -> bytes:
    key = files.key(join(directory, mlmodel.MLMODEL_FILE))
    try:
        info = await tracking.store.head(key)
        if info.size > mlmodel.MAX_MLMODEL_BYTES:
            raise InvalidParameter("The model's MLmodel file is too large to be one")
        return await tracking.store.get_bytes(key)
    except ObjectNotFound:
        raise InvalidParameter(
            f"The run has no logged model at {directory!r} (no MLmodel file there)"
        ) from None


async def create(
    tracking: Tracking, access: ProjectAccess, body: CreateModelVersion
) -> dict[str, Any]:
    """The registry's record of the new version. No database connection is held while the
    registry copies the file."""
    where = parse_source(body.source)
    async with tracking.runtime.db.read_only() as session:
        run = await runs.get(session, access, where.run_ref)
        if (
            where.experiment_ref is not None
            and external_id(run.experiment_id) != where.experiment_ref
        ):
            raise DoesNotExist(f"Run with id={where.run_ref} not found")
        if body.run_id and parse_id(body.run_id) != run.id:
            raise InvalidParameter("run_id is not the run the source names")
        data = (await runs_repository.data_of(session, [run.id]))[run.id]
        files = RunFiles(run.project_id, run.id, run.artifact_uri)
        run_name, experiment_id = run.name, run.experiment_id
        # The run's job link is the tracking service's own record (from the token that
        # created the run), never the caller's word.
        job = _job_link(tracking, run) if run.job_id and run.task else None
    logged = mlmodel.parse(await _mlmodel(tracking, files, where.path))
    model_file = relative_path(join(where.path, logged.file))
    request = {
        "source": {
            "run_id": str(run.id),
            "experiment_id": str(experiment_id),
            "path": model_file,
            "uri": body.source,
            "run_name": run_name[:250],
            "job": job,
        },
        "format": logged.format,
        "metrics": _metrics(data.metrics),
        "params": {p.key: p.value for p in data.params},
        "signature": logged.signature,
        "problem": logged.problem,
        "description": body.description,
        "tags": {t.key: t.value for t in body.tags},
    }
    found = await registry_calls.call(
        tracking,
        access,
        "POST",
        registry_calls.model_path(body.name, "/versions/from-run"),
        json=request,
        not_found=registry_calls.model_not_found(body.name),
    )
    return dict(found)
