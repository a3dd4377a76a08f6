"""How the training task types reach the platform: upstream tables and artifacts by reference,
through the job-scoped :class:`~armillary.sdk.task_api.TaskApi`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from armillary.contracts.tasks import TaskContext
from armillary.sdk.task_api import TaskApi

from .tabular import TrainingError

# Replaced by tests: the transport to the API.
_api_transport: httpx.BaseTransport | None = None


def task_api(context: TaskContext, timeout: float = 120.0) -> TaskApi:
    return TaskApi(context, timeout=timeout, transport=_api_transport)


def workdir(context: TaskContext, name: str) -> Path:
    path = Path(context.workdir) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def upstream(inputs: Mapping[str, Any], name: str, what: str) -> Mapping[str, Any]:
    found = inputs.get(name)
    if not isinstance(found, Mapping):
        raise TrainingError(f"{what} {name!r} is not a direct upstream task (name it in `needs`)")
    return found


def fetch_input_table(
    api: TaskApi, inputs: Mapping[str, Any], name: str, dest: Path
) -> tuple[Path, str | None]:
    """The table upstream task ``name`` produced, downloaded (and checked against its SHA-256
    when the task recorded one); returns the file and that SHA-256."""
    outputs = upstream(inputs, name, "input")
    table = outputs.get("table")
    if not isinstance(table, Mapping):
        raise TrainingError(f"task {name!r} produced no table to read")
    digest = outputs.get("sha256")
    expected = digest if isinstance(digest, str) else None
    path = api.fetch_table(table, dest, sha256=expected)
    return path, expected or sha256(path)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
