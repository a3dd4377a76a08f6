"""Who may do what to models: the project roles of DESIGN §6, plus the registry's own rules
(job tokens only register and point aliases; some alias names are for owners only)."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends

from armillary.contracts.identity import ProjectRole
from armillary.contracts.registry import MODEL_NAME_PATTERN
from armillary.kit.authz import ProjectAccess, project_permission
from armillary.kit.errors import BadRequest, Forbidden

Reader = Annotated[ProjectAccess, Depends(project_permission("model:read"))]
Writer = Annotated[ProjectAccess, Depends(project_permission("model:write"))]
# Separate actions so a job token (kit.authz) holds them only when its task type declares them.
AliasMover = Annotated[ProjectAccess, Depends(project_permission("model:alias"))]
Deleter = Annotated[ProjectAccess, Depends(project_permission("model:delete"))]

_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
# Path segments under /models that are routes, not model names.
RESERVED_NAMES = frozenset({"lineage"})


class InvalidName(BadRequest):
    title = "Invalid name"


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.fullmatch(name) or ".." in name or name in RESERVED_NAMES:
        raise InvalidName(
            "Model names are 1-128 letters, digits, '.', '_' or '-', starting with a letter or "
            "digit, without '..'; 'lineage' is reserved"
        )
    return name


def refuse_job(access: ProjectAccess, activity: str) -> None:
    """Job tokens read, register versions and point aliases; nothing else."""
    if access.principal.is_job:
        raise Forbidden(f"Job tokens cannot {activity}")


def require_owner(access: ProjectAccess, activity: str) -> None:
    if access.role is not ProjectRole.OWNER:
        raise Forbidden(f"Only a project owner may {activity}")
