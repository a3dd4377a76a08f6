"""Who may manage deployments: the project roles of DESIGN §6 (viewers read; owners and
editors change; job tokens of the project create and reconfigure, nothing else)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from armillary.kit.authz import ProjectAccess, project_permission

Reader = Annotated[ProjectAccess, Depends(project_permission("deployment:read"))]
Writer = Annotated[ProjectAccess, Depends(project_permission("deployment:write"))]
