"""Who may read and write a project's experiments and runs (DESIGN §6): viewers read,
editors write; a non-member gets RESOURCE_DOES_NOT_EXIST, by id and by name alike."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from armillary.kit.authz import ProjectAccess, project_permission

from .wire_errors import MlflowRoute

Reader = Annotated[ProjectAccess, Depends(project_permission("run:read"))]
Writer = Annotated[ProjectAccess, Depends(project_permission("run:write"))]

# The tracking URI is http://host/mlflow/<project>; MLflow's client appends its API paths.
API_PREFIX = "/mlflow/{project}/api/2.0/mlflow"


def mlflow_router(tag: str) -> APIRouter:
    return APIRouter(prefix=API_PREFIX, tags=[tag], route_class=MlflowRoute)
