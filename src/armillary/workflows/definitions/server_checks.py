"""Checks of a spec that need the server: that the objects its tasks name exist in the
project. Offline validation lists these as skipped; applying a spec makes them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.authz import ProjectAccess
from armillary.kit.errors import Unprocessable

from ..code import repository as bundles
from ..components import DatasetDirectory
from ..specs import references
from ..specs.schema import WorkflowSpec
from ..specs.validation import ErrorKind, SpecError

# (session, caller's project access, parameter value) -> what is wrong, or None.
Checker = Callable[[AsyncSession, ProjectAccess, Any], Awaitable[str | None]]


async def _bundle_exists(session: AsyncSession, access: ProjectAccess, value: Any) -> str | None:
    if not isinstance(value, str):
        return None  # the parameter schema already refused it
    if await bundles.latest_bundle(session, access.project_id, value) is None:
        return f"no code bundle {value!r} in project {access.project_slug}"
    return None


# (task type, parameter) -> its check.
CHECKS: dict[tuple[str, str], Checker] = {("python", "bundle"): _bundle_exists}


async def check(
    session: AsyncSession,
    access: ProjectAccess,
    spec: WorkflowSpec,
    datasets: DatasetDirectory | None = None,
) -> None:
    """422 with every missing object and the path of the field naming it: code bundles,
    datasets an ingest reads, and columns a validation names where the input's schema is
    known (an ingest of a dataset version)."""
    errors = []
    for index, task in enumerate(spec.tasks):
        for param, value in task.params.items():
            checker = CHECKS.get((task.type, param))
            if checker is None or references.parse(value) is not None:
                continue
            problem = await checker(session, access, value)
            if problem is not None:
                errors.append(
                    SpecError(
                        path=f"tasks[{index}].params.{param}",
                        message=problem,
                        kind=ErrorKind.MISSING_OBJECT,
                    )
                )
    if datasets is not None:
        errors.extend(await _dataset_errors(access, spec, datasets))
    if errors:
        raise Unprocessable(
            f"The workflow spec has {len(errors)} error(s)",
            extra={"errors": [e.model_dump(mode="json") for e in errors], "skipped": []},
        )


async def _dataset_errors(
    access: ProjectAccess, spec: WorkflowSpec, datasets: DatasetDirectory
) -> list[SpecError]:
    """Ingested dataset versions exist, and validations of them name existing columns."""
    errors: list[SpecError] = []
    known: dict[str, list[str]] = {}  # ingest task -> columns of the version it reads
    for index, task in enumerate(spec.tasks):
        dataset, version = task.params.get("dataset"), task.params.get("version", "latest")
        if task.type != "ingest" or not isinstance(dataset, str) or references.parse(dataset):
            continue
        if not (isinstance(version, int) or version == "latest"):
            continue
        columns = await datasets.version_columns(
            access.principal.token, str(access.project_id), dataset, version
        )
        if columns is None:
            errors.append(
                SpecError(
                    path=f"tasks[{index}].params.dataset",
                    message=f"no dataset {dataset!r} version {version} in project "
                    f"{access.project_slug}",
                    kind=ErrorKind.MISSING_OBJECT,
                )
            )
        else:
            known[task.name] = [c["name"] for c in columns]
    for index, task in enumerate(spec.tasks):
        source = task.params.get("input")
        if task.type != "validate" or not isinstance(source, str) or source not in known:
            continue
        for position, item in enumerate(task.params.get("checks") or []):
            if not isinstance(item, dict) or item.get("type") == "schema":
                continue  # a schema check's columns are what it checks for
            for field, name in _named_columns(item):
                if name not in known[source]:
                    errors.append(
                        SpecError(
                            path=f"tasks[{index}].params.checks[{position}].{field}",
                            message=f"column {name!r} is not in the table of {source!r} "
                            f"(columns: {', '.join(known[source])})",
                            kind=ErrorKind.MISSING_OBJECT,
                        )
                    )
    return errors


def _named_columns(check: dict[str, Any]) -> list[tuple[str, str]]:
    named: list[tuple[str, str]] = []
    if isinstance(check.get("column"), str):
        named.append(("column", check["column"]))
    columns = check.get("columns")
    if isinstance(columns, list):
        named.extend((f"columns[{i}]", c) for i, c in enumerate(columns) if isinstance(c, str))
    return named
