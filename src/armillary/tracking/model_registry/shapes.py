"""The registry's records as MLflow's registry API writes them (``model_registry.proto``):
registered models and model versions, times in milliseconds, versions as strings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import Field, field_validator

from ..wire import MAX_NAME_LENGTH, WireModel

# MLflow has stages; the registry has aliases instead, so every version is in stage "None".
NO_STAGE = "None"
READY = "READY"


def millis(value: Any) -> int:
    """An ISO 8601 time from the registry as milliseconds since the epoch (0 when absent)."""
    if not isinstance(value, str):
        return 0
    return int(datetime.fromisoformat(value).timestamp() * 1000)


def tags_json(tags: Any) -> list[dict[str, str]]:
    if not isinstance(tags, dict):
        return []
    return [{"key": str(k), "value": str(v)} for k, v in sorted(tags.items())]


def aliases_json(aliases: Any) -> list[dict[str, str]]:
    if not isinstance(aliases, dict):
        return []
    return [{"alias": str(a), "version": str(n)} for a, n in sorted(aliases.items())]


def version_json(record: dict[str, Any], aliases: dict[str, int] | None = None) -> dict[str, Any]:
    """A registry version record as MLflow's ModelVersion. ``source`` and ``run_id`` are the
    run's for a version registered from MLflow; other versions (a job's, an upload) name
    themselves ``models:/<name>/<version>`` and have no run."""
    lineage = record.get("lineage") or {}
    name, number = str(record.get("model")), int(record.get("version") or 0)
    from_mlflow = record.get("source") == "mlflow"
    body: dict[str, Any] = {
        "name": name,
        "version": str(number),
        "creation_timestamp": millis(record.get("created_at")),
        "last_updated_timestamp": millis(record.get("created_at")),
        "user_id": str(record.get("created_by") or ""),
        "current_stage": NO_STAGE,
        "description": str(record.get("description") or ""),
        "source": str(lineage.get("mlflow_source") or "")
        if from_mlflow
        else f"models:/{name}/{number}",
        "run_id": str(lineage.get("run_id") or "") if from_mlflow else "",
        "status": READY,
        "tags": tags_json(record.get("tags")),
        "aliases": sorted(a for a, n in (aliases or {}).items() if n == number),
    }
    return body


def registered_model_json(detail: dict[str, Any]) -> dict[str, Any]:
    """A registry model (a list item or its detail) as MLflow's RegisteredModel; its latest
    version in full when the record carries it (``latest``), else its number only."""
    aliases = detail.get("aliases") or {}
    latest = detail.get("latest")
    latest_versions: list[dict[str, Any]] = []
    if isinstance(latest, dict):
        latest_versions = [version_json(latest, aliases)]
    elif detail.get("latest_version"):
        latest_versions = [
            {
                "name": str(detail.get("name")),
                "version": str(detail["latest_version"]),
                "current_stage": NO_STAGE,
                "status": READY,
            }
        ]
    return {
        "name": str(detail.get("name")),
        "creation_timestamp": millis(detail.get("created_at")),
        "last_updated_timestamp": millis(detail.get("updated_at")),
        "user_id": str(detail.get("created_by") or ""),
        "description": str(detail.get("description") or ""),
        "latest_versions": latest_versions,
        "tags": tags_json(detail.get("tags")),
        "aliases": aliases_json(aliases),
    }


class KeyValueIn(WireModel):
    key: str = Field(min_length=1, max_length=250)
    value: str = Field(default="", max_length=8000)


class ModelName(WireModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH)


class CreateRegisteredModel(ModelName):
    description: str = Field(default="", max_length=10_000)
    tags: list[KeyValueIn] = Field(default_factory=list, max_length=100)


class UpdateRegisteredModel(ModelName):
    description: str | None = Field(default=None, max_length=10_000)


def _version_number(value: str) -> str:
    if not value.isdigit() or int(value) < 1 or int(value) > 2**31 - 1:
        raise ValueError("version must be a positive integer")
    return value


class VersionRef(ModelName):
    version: str = Field(min_length=1, max_length=20)

    _number = field_validator("version")(_version_number)


class UpdateModelVersion(VersionRef):
    description: str | None = Field(default=None, max_length=10_000)


class CreateModelVersion(ModelName):
    source: str = Field(min_length=1, max_length=1000)
    run_id: str | None = Field(default=None, max_length=64)
    description: str = Field(default="", max_length=10_000)
    tags: list[KeyValueIn] = Field(default_factory=list, max_length=100)


class AliasRef(ModelName):
    alias: str = Field(min_length=1, max_length=256)


class SetAlias(AliasRef):
    version: str = Field(min_length=1, max_length=20)

    _number = field_validator("version")(_version_number)


class SearchQuery(WireModel):
    # A query string, so every bound keeps the whole URL within what the HTTP server reads
    # (a 10,000-character filter of non-ASCII characters, percent-encoded, was refused by it
    # with a bare 400 before the app saw it). MLflow's filters are a few clauses.
    filter: str | None = Field(default=None, max_length=1000)
    # Checked against each search's own limit (page_size); 200,000: model versions'.
    max_results: int | None = Field(default=None, ge=0, le=200_000)
    order_by: list[Annotated[str, Field(max_length=250)]] = Field(
        default_factory=list, max_length=10
    )
    page_token: str | None = Field(default=None, max_length=1000)


class LatestVersions(ModelName):
    stages: list[str] = Field(default_factory=list, max_length=10)
