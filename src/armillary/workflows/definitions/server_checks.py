"""Checks of a spec that need the server: that the objects its tasks name exist in the
project. Offline validation lists these as skipped; applying a spec makes them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.authz import ProjectAccess
from armillary.kit.errors import Unprocessable

from ..code import repository as bundles
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


async def check(session: AsyncSession, access: ProjectAccess, spec: WorkflowSpec) -> None:
    """422 with every missing object and the path of the field naming it."""
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
    if errors:
        raise Unprocessable(
            f"The workflow spec has {len(errors)} error(s)",
            extra={"errors": [e.model_dump(mode="json") for e in errors], "skipped": []},
        )
