from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from armillary.contracts.identity import PlatformRole, ProjectAccessInfo, ProjectRole
from armillary.kit import security_events
from armillary.kit.authz import (
    Caller,
    Principal,
    ProjectAccess,
    project_permission,
    require_platform_role,
)
from armillary.kit.db import after_commit
from armillary.kit.deps import CurrentRuntime, ReadSession, Session
from armillary.kit.errors import NotFound
from armillary.kit.pagination import Page, Paging
from armillary.kit.runtime import Runtime

from ..auth.deps import Direct
from ..users.models import User
from . import repository, service
from .models import Membership
from .schemas import (
    MemberOut,
    MembershipIn,
    ProjectCreate,
    ProjectOut,
    ProjectUpdate,
    ProjectWithRole,
)

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])

Creator = Annotated[Principal, Depends(require_platform_role(PlatformRole.DATA_SCIENTIST))]
Reader = Annotated[ProjectAccess, Depends(project_permission("project:read"))]
Editor = Annotated[ProjectAccess, Depends(project_permission("project:update"))]
Owner = Annotated[ProjectAccess, Depends(project_permission("project:delete"))]
MemberReader = Annotated[ProjectAccess, Depends(project_permission("members:read"))]
MemberManager = Annotated[ProjectAccess, Depends(project_permission("members:manage"))]


def _with_role(project: object, role: ProjectRole) -> ProjectWithRole:
    out = ProjectOut.model_validate(project)
    return ProjectWithRole(**out.model_dump(), my_role=role)


def _member_out(membership: Membership, user: User) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        email=user.email,
        name=user.name,
        platform_role=PlatformRole(user.role),
        role=ProjectRole(membership.role),
        created_at=membership.created_at,
    )


@router.get("", name="projects.list")
async def list_projects(caller: Caller, session: ReadSession, paging: Paging) -> Page[ProjectOut]:
    """Projects the caller is a member of (every project for admins); with a job token, at
    most the job's project."""
    rows, total = await repository.page_visible(
        session,
        None if caller.role is PlatformRole.ADMIN else caller.user_id,
        only=caller.scope_project_id,
        limit=paging.limit,
        offset=paging.offset,
    )
    return Page(
        items=[ProjectOut.model_validate(r) for r in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.post("", name="projects.create", status_code=status.HTTP_201_CREATED, responses={409: {}})
async def create_project(body: ProjectCreate, caller: Creator, session: Session) -> ProjectWithRole:
    """Create a project; the creator becomes its owner."""
    return _with_role(await service.create(session, caller, body), ProjectRole.OWNER)


@router.get("/{project}", name="projects.get", response_model=ProjectWithRole)
async def get_project(access: Reader, request: Request) -> Response:
    """The project and the caller's role in it. The hot read path (issue 18): the cached
    access answer carries the fields, so no database read; and the body is serialized once,
    not dumped, validated and dumped again as FastAPI does with a returned model."""
    if access.fields is not None:
        project = ProjectWithRole(
            id=access.project_id,
            slug=access.project_slug,
            **access.fields.model_dump(),
            my_role=access.role,
        )
    else:
        project = await _project_from_database(request, access)
    return Response(project.model_dump_json(), media_type="application/json")


async def _project_from_database(request: Request, access: ProjectAccess) -> ProjectWithRole:
    runtime: Runtime = request.app.state.runtime
    async with runtime.db.read_connection() as connection:
        fields = await repository.project_fields(connection, access.project_id)
    if fields is None:
        raise NotFound("Project not found")
    return ProjectWithRole(**fields, my_role=access.role)


@router.patch("/{project}", name="projects.update")
async def update_project(
    body: ProjectUpdate, access: Editor, session: Session, runtime: CurrentRuntime
) -> ProjectWithRole:
    project = await service.update(session, access, body)
    # The broadcast reaches other processes a moment later; the caller's next read must not
    # find the old fields, so this process drops the cached answers as soon as it commits.
    after_commit(session, lambda: runtime.require_access().forget_project(project.id, project.slug))
    return _with_role(project, access.role)


@router.delete("/{project}", name="projects.delete", status_code=status.HTTP_204_NO_CONTENT)
async def delete_project(access: Owner, session: Session) -> None:
    await service.remove(session, access)


@router.get("/{project}/members", name="projects.members")
async def list_members(access: MemberReader, session: ReadSession) -> list[MemberOut]:
    return [_member_out(m, u) for m, u in await repository.members(session, access.project_id)]


@router.put("/{project}/members/{user}", name="projects.member_set", responses={409: {}})
async def set_member(
    user: str, body: MembershipIn, access: MemberManager, session: Session
) -> MemberOut:
    """Add a member or change their role. ``user`` is a user id or an email address."""
    return _member_out(*await service.set_member(session, access, user, body.role))


@router.delete(
    "/{project}/members/{user}",
    name="projects.member_remove",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={409: {}},
)
async def remove_member(user: str, access: MemberManager, session: Session) -> None:
    await service.remove_member(session, access, user)


@router.get("/{project}/access", name="projects.access")
async def project_access(project: str, caller: Direct, session: ReadSession) -> ProjectAccessInfo:
    """The caller's effective role in the project, read uncached (services cache it). A job
    token sees no project but its own."""
    info = await service.access_for(session, caller.user, project)
    if info is None or (caller.scope is not None and info.project_id != caller.scope.project_id):
        security_events.mark_denied_project(project, caller.user.id)
        raise NotFound("Project not found")
    return info
