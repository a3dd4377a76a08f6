"""MLflow's model registry API (``model_registry.proto``) over the registry service: registered
models are the registry's models, model versions its versions, aliases its aliases (with
their history). Every call goes to the registry's public API with the caller's token."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Body, Depends, Query

from armillary.kit.authz import ProjectAccess

from ..access import Reader, Writer, mlflow_router
from ..components import Tracking, current_tracking
from ..wire_errors import InvalidParameter
from . import registry_calls as calls
from . import search, versions
from .shapes import (
    AliasRef,
    CreateModelVersion,
    CreateRegisteredModel,
    LatestVersions,
    ModelName,
    SearchQuery,
    SetAlias,
    UpdateModelVersion,
    UpdateRegisteredModel,
    VersionRef,
    registered_model_json,
    version_json,
)

router = mlflow_router("tracking")
TrackingService = Annotated[Tracking, Depends(current_tracking)]


async def _model_json(tracking: Tracking, access: ProjectAccess, name: str) -> dict[str, Any]:
    return registered_model_json(await calls.model(tracking, access, name))


async def _version_json(
    tracking: Tracking, access: ProjectAccess, name: str, number: str
) -> dict[str, Any]:
    model = await calls.model(tracking, access, name)
    record = await calls.version(tracking, access, name, number)
    return version_json(record, model.get("aliases") or {})


@router.post("/registered-models/create", name="tracking.registered_models.create")
async def create_registered_model(
    body: CreateRegisteredModel, access: Writer, tracking: TrackingService
) -> dict[str, Any]:
    created = await calls.call(
        tracking,
        access,
        "POST",
        json={
            "name": body.name,
            "description": body.description,
            "tags": {t.key: t.value for t in body.tags},
        },
    )
    return {"registered_model": registered_model_json(created)}


@router.get("/registered-models/get", name="tracking.registered_models.get")
async def get_registered_model(
    query: Annotated[ModelName, Query()], access: Reader, tracking: TrackingService
) -> dict[str, Any]:
    return {"registered_model": await _model_json(tracking, access, query.name)}


@router.patch("/registered-models/update", name="tracking.registered_models.update")
async def update_registered_model(
    body: UpdateRegisteredModel, access: Writer, tracking: TrackingService
) -> dict[str, Any]:
    changes = {} if body.description is None else {"description": body.description}
    await calls.call(
        tracking,
        access,
        "PATCH",
        calls.model_path(body.name),
        json=changes,
        not_found=calls.model_not_found(body.name),
    )
    return {"registered_model": await _model_json(tracking, access, body.name)}


@router.delete("/registered-models/delete", name="tracking.registered_models.delete")
async def delete_registered_model(
    body: ModelName, access: Writer, tracking: TrackingService
) -> dict[str, Any]:
    await calls.call(
        tracking,
        access,
        "DELETE",
        calls.model_path(body.name),
        not_found=calls.model_not_found(body.name),
    )
    return {}


@router.get("/registered-models/search", name="tracking.registered_models.search")
async def search_registered_models(
    query: Annotated[SearchQuery, Query()], access: Reader, tracking: TrackingService
) -> dict[str, Any]:
    found, token = await search.registered_models(tracking, access, query)
    answer: dict[str, Any] = {"registered_models": [registered_model_json(m) for m in found]}
    if token:
        answer["next_page_token"] = token
    return answer


@router.post("/registered-models/get-latest-versions", name="tracking.registered_models.latest")
async def get_latest_versions(
    body: LatestVersions, access: Reader, tracking: TrackingService
) -> dict[str, Any]:
    """The latest version (every version is in stage "None": the registry has aliases)."""
    model = await calls.model(tracking, access, body.name)
    latest = model.get("latest")
    wanted = not body.stages or any(s.lower() == "none" for s in body.stages)
    if not isinstance(latest, dict) or not wanted:
        return {"model_versions": []}
    return {"model_versions": [version_json(latest, model.get("aliases") or {})]}


@router.post("/registered-models/alias", name="tracking.registered_models.alias_set")
async def set_registered_model_alias(
    body: SetAlias, access: Writer, tracking: TrackingService
) -> dict[str, Any]:
    await calls.call(
        tracking,
        access,
        "PUT",
        calls.model_path(body.name, f"/aliases/{calls.segment(body.alias)}"),
        json={"version": int(body.version), "reason": "set through MLflow's client"},
        not_found=f"Model Version (name={body.name}, version={body.version}) not found",
    )
    return {}


@router.delete("/registered-models/alias", name="tracking.registered_models.alias_delete")
async def delete_registered_model_alias(
    access: Writer,
    tracking: TrackingService,
    body: Annotated[AliasRef | None, Body()] = None,
    name: Annotated[str | None, Query(max_length=500)] = None,
    alias: Annotated[str | None, Query(max_length=256)] = None,
) -> dict[str, Any]:
    # MLflow's client sends the fields as a JSON body; other clients may use the query.
    ref = body
    if ref is None:
        if not name or not alias:
            raise InvalidParameter("name and alias are required")
        ref = AliasRef(name=name, alias=alias)
    await calls.call(
        tracking,
        access,
        "DELETE",
        calls.model_path(ref.name, f"/aliases/{calls.segment(ref.alias)}"),
        not_found=f"Registered model alias {ref.alias} not found",
    )
    return {}


@router.get("/registered-models/alias", name="tracking.registered_models.alias_get")
async def get_model_version_by_alias(
    query: Annotated[AliasRef, Query()], access: Reader, tracking: TrackingService
) -> dict[str, Any]:
    model = await calls.model(tracking, access, query.name)
    found = await calls.call(
        tracking,
        access,
        "GET",
        calls.model_path(query.name, f"/aliases/{calls.segment(query.alias)}"),
        not_found=f"Registered model alias {query.alias} not found",
    )
    return {"model_version": version_json(found["model_version"], model.get("aliases") or {})}


@router.post("/model-versions/create", name="tracking.model_versions.create")
async def create_model_version(
    body: CreateModelVersion, access: Writer, tracking: TrackingService
) -> dict[str, Any]:
    record = await versions.create(tracking, access, body)
    model = await calls.model(tracking, access, body.name)
    return {"model_version": version_json(record, model.get("aliases") or {})}


@router.get("/model-versions/get", name="tracking.model_versions.get")
async def get_model_version(
    query: Annotated[VersionRef, Query()], access: Reader, tracking: TrackingService
) -> dict[str, Any]:
    return {"model_version": await _version_json(tracking, access, query.name, query.version)}


@router.patch("/model-versions/update", name="tracking.model_versions.update")
async def update_model_version(
    body: UpdateModelVersion, access: Writer, tracking: TrackingService
) -> dict[str, Any]:
    changes = {} if body.description is None else {"description": body.description}
    await calls.call(
        tracking,
        access,
        "PATCH",
        calls.model_path(body.name, f"/versions/{int(body.version)}"),
        json=changes,
        not_found=f"Model Version (name={body.name}, version={body.version}) not found",
    )
    return {"model_version": await _version_json(tracking, access, body.name, body.version)}


@router.get("/model-versions/search", name="tracking.model_versions.search")
async def search_model_versions(
    query: Annotated[SearchQuery, Query()], access: Reader, tracking: TrackingService
) -> dict[str, Any]:
    found, token = await search.model_versions(tracking, access, query)
    answer: dict[str, Any] = {"model_versions": found}
    if token:
        answer["next_page_token"] = token
    return answer


@router.get("/model-versions/get-download-uri", name="tracking.model_versions.download_uri")
async def get_model_version_download_uri(
    query: Annotated[VersionRef, Query()], access: Reader, tracking: TrackingService
) -> dict[str, Any]:
    """Where MLflow's client downloads the version from: the run's logged model, through the
    artifact proxy. A version not registered from MLflow has no such place."""
    record = await calls.version(tracking, access, query.name, query.version)
    if record.get("source") != "mlflow":
        raise InvalidParameter(
            f"Version {query.version} of {query.name} was not registered from an MLflow run: "
            "download its files from Armillary's registry API"
        )
    return {"artifact_uri": version_json(record)["source"]}
