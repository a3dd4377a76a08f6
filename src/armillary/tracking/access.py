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
# Where MLflow's client finds the artifact proxy for an `mlflow-artifacts:/` URI.
ARTIFACTS_PREFIX = "/mlflow/{project}/api/2.0/mlflow-artifacts"


def mlflow_router(tag: str, prefix: str = API_PREFIX) -> APIRouter:
    return APIRouter(prefix=prefix, tags=[tag], route_class=MlflowRoute)
