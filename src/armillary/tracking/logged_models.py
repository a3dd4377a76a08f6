"""MLflow 3's logged models, kept as a directory of their run's artifacts.

MLflow 3's ``mlflow.<flavour>.log_model`` creates a LoggedModel, uploads the saved model to
the location the server gives it, and links it to the run (``runs/outputs``). The platform
keeps no logged-model records (ADR 0037, decision 11): a model is logged inside a run, its id
names that run and the model's name (``m-<run_id>-<name>``), and its location is the run's
artifact directory ``<name>``, so ``runs:/<run_id>/<name>`` finds its ``MLmodel`` and
``mlflow.register_model`` registers it like any model logged there. Its tags, params and the
run's outputs are not kept. Searches find no logged models: ``runs:/`` URIs are resolved
through the run's artifacts instead.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path as PathParam
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.authz import ProjectAccess
from armillary.kit.deps import ReadSession
from armillary.kit.storage.errors import InvalidObjectKey
from armillary.kit.storage.keys import validate_segment

from .access import Reader, Writer, mlflow_router
from .runs import service as runs
from .runs.models import Run
from .runs.schemas import RunRef
from .wire import KeyValue, WireModel, external_id, now_ms
from .wire_errors import DoesNotExist, InvalidParameter

router = mlflow_router("tracking")

_MODEL_ID = re.compile(r"^m-([0-9a-f]{32})-(.+)$")
ModelId = Annotated[str, PathParam(max_length=400)]


class SearchLoggedModels(WireModel):
    experiment_ids: list[str] = Field(default_factory=list, max_length=100)


class CreateLoggedModel(WireModel):
    experiment_id: str | None = Field(default=None, max_length=64)
    name: str | None = Field(default=None, max_length=250)
    model_type: str | None = Field(default=None, max_length=250)
    source_run_id: str | None = Field(default=None, max_length=64)
    tags: list[KeyValue] = Field(default_factory=list, max_length=100)


class LogOutputs(RunRef):
    models: list[dict[str, Any]] = Field(default_factory=list, max_length=100)


def _name(raw: str | None) -> str:
    try:
        return validate_segment(raw or "", what="logged model name")
    except InvalidObjectKey:
        raise InvalidParameter(
            "A logged model's name is a single artifact directory name (letters, digits, "
            "'.', '_', '-'), under which its run keeps it"
        ) from None


def _model_json(run: Run, name: str, model_type: str | None = None) -> dict[str, Any]:
    now = now_ms()
    return {
        "info": {
            "model_id": f"m-{external_id(run.id)}-{name}",
            "experiment_id": external_id(run.experiment_id),
            "name": name,
            "creation_timestamp_ms": run.start_time,
            "last_updated_timestamp_ms": now,
            "artifact_uri": f"{run.artifact_uri}/{name}",
            "status": "LOGGED_MODEL_READY",
            "model_type": model_type or "",
            "source_run_id": external_id(run.id),
        },
        "data": {},
    }


async def _of(session: AsyncSession, access: ProjectAccess, model_id: str) -> tuple[Run, str]:
    found = _MODEL_ID.fullmatch(model_id)
    if found is None:
        raise DoesNotExist(f"Logged model with id={model_id} not found")
    run = await runs.get(session, access, found.group(1))
    return run, _name(found.group(2))


@router.post("/logged-models/search", name="tracking.logged_models.search")
async def search_logged_models(body: SearchLoggedModels, access: Reader) -> dict[str, Any]:
    return {"models": []}


@router.post("/logged-models", name="tracking.logged_models.create")
async def create_logged_model(
    body: CreateLoggedModel, access: Writer, session: ReadSession
) -> dict[str, Any]:
    if not body.source_run_id:
        raise InvalidParameter(
            "Armillary keeps a logged model under its run: log the model inside a run"
        )
    run = await runs.get_active(session, access, body.source_run_id)
    name = _name(body.name)
    return {"model": _model_json(run, name, body.model_type)}


@router.get("/logged-models/{model_id}", name="tracking.logged_models.get")
async def get_logged_model(
    model_id: ModelId, access: Reader, session: ReadSession
) -> dict[str, Any]:
    run, name = await _of(session, access, model_id)
    return {"model": _model_json(run, name)}


@router.patch("/logged-models/{model_id}", name="tracking.logged_models.finalize")
async def finalize_logged_model(
    model_id: ModelId, access: Writer, session: ReadSession
) -> dict[str, Any]:
    run, name = await _of(session, access, model_id)
    return {"model": _model_json(run, name)}


@router.post("/runs/outputs", name="tracking.runs.outputs")
async def log_outputs(body: LogOutputs, access: Writer, session: ReadSession) -> dict[str, Any]:
    """The run's link to its logged models is their id (``m-<run_id>-<name>``): nothing else is
    kept, but the run must be the project's and active."""
    await runs.get_active(session, access, str(body.run_id))
    return {}
