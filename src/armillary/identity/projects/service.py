"""Projects and memberships, with the platform role caps of DESIGN §6."""

from __future__ import annotations

import uuid

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import MembershipChanged, ProjectChanged, ProjectDeleted
from armillary.contracts.identity import (
    PlatformRole,
    ProjectAccessInfo,
    ProjectFields,
    ProjectRole,
)
from armillary.kit import audit
from armillary.kit.authz import Principal, ProjectAccess
from armillary.kit.errors import Conflict, NotFound, Unprocessable
from armillary.kit.events import publish

from ..components import SERVICE
from ..users import repository as users
from ..users.models import User
from . import repository as repo
from .models import Membership, Project
from .schemas import ProjectCreate, ProjectUpdate

_RANK = {ProjectRole.VIEWER: 1, ProjectRole.EDITOR: 2, ProjectRole.OWNER: 3}
# The highest project role each platform role can hold.
_CAP = {
    PlatformRole.ADMIN: ProjectRole.OWNER,
    PlatformRole.DATA_SCIENTIST: ProjectRole.OWNER,
    PlatformRole.USER: ProjectRole.VIEWER,
}


def effective_role(platform_role: PlatformRole, member_role: ProjectRole) -> ProjectRole:
    cap = _CAP[platform_role]
    return member_role if _RANK[member_role] <= _RANK[cap] else cap


async def access_for(session: AsyncSession, user: User, ref: str) -> ProjectAccessInfo | None:
    """What ``user`` may do in project ``ref`` (slug or id); None when they may not see it."""
    project = await repo.by_slug_or_id(session, ref)
    if project is None:
        return None
    platform_role = PlatformRole(user.role)
    if platform_role is PlatformRole.ADMIN:
        role = ProjectRole.OWNER
    else:
        member = await repo.membership(session, project.id, user.id)
        if member is None:
            return None
        role = effective_role(platform_role, ProjectRole(member.role))
    return ProjectAccessInfo(
        project_id=project.id, project_slug=project.slug, role=role, project=fields_of(project)
    )


def fields_of(project: Project) -> ProjectFields:
    return ProjectFields(
        name=project.name,
        description=project.description,
        created_by=project.created_by,
        created_at=project.created_at,
        updated_at=project.updated_at,
    )


async def create(session: AsyncSession, caller: Principal, data: ProjectCreate) -> Project:
    if await repo.by_slug_or_id(session, data.slug) is not None:
        raise Conflict("A project with this slug already exists")
    project = Project(
        slug=data.slug, name=data.name, description=data.description, created_by=caller.user_id
    )
    session.add(project)
    await session.flush()
    session.add(
        Membership(project_id=project.id, user_id=caller.user_id, role=ProjectRole.OWNER.value)
    )
    await session.flush()
    audit.record(
        session,
        action="projects.create",
        resource_type="project",
        resource_id=project.id,
        details={"slug": project.slug},
        service=SERVICE,
    )
    publish(
        session,
        MembershipChanged.TYPE,
        MembershipChanged(project_id=project.id, project_slug=project.slug, user_id=caller.user_id),
    )
    return project


async def get(session: AsyncSession, access: ProjectAccess) -> Project:
    project = await session.get(Project, access.project_id)
    if project is None:
        raise NotFound("Project not found")
    return project


async def update(session: AsyncSession, access: ProjectAccess, data: ProjectUpdate) -> Project:
    project = await get(session, access)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    for field, value in changes.items():
        setattr(project, field, value)
    await session.flush()
    audit.record(
        session,
        action="projects.update",
        resource_type="project",
        resource_id=project.id,
        details={"fields": sorted(changes)},
        service=SERVICE,
    )
    # Cached access answers carry the project's fields: every process drops its own.
    publish(
        session,
        ProjectChanged.TYPE,
        ProjectChanged(project_id=project.id, project_slug=project.slug),
    )
    return project


async def remove(session: AsyncSession, access: ProjectAccess) -> None:
    project = await get(session, access)
    member_ids = await repo.member_ids(session, project.id)
    await session.execute(delete(Membership).where(Membership.project_id == project.id))
    await session.delete(project)
    audit.record(
        session,
        action="projects.delete",
        resource_type="project",
        resource_id=project.id,
        details={"slug": project.slug},
        service=SERVICE,
    )
    publish(
        session,
        ProjectDeleted.TYPE,
        ProjectDeleted(project_id=project.id, project_slug=project.slug, member_ids=member_ids),
    )


async def _user_by_ref(session: AsyncSession, ref: str) -> User:
    user: User | None
    try:
        user = await users.by_id(session, uuid.UUID(ref))
    except ValueError:
        user = await users.by_email(session, ref)
    if user is None:
        raise NotFound("User not found")
    return user


async def set_member(
    session: AsyncSession, access: ProjectAccess, user_ref: str, role: ProjectRole
) -> tuple[Membership, User]:
    user = await _user_by_ref(session, user_ref)
    platform_role = PlatformRole(user.role)
    if _RANK[role] > _RANK[_CAP[platform_role]]:
        raise Unprocessable(
            f"A '{platform_role.value}' account can be at most '{_CAP[platform_role].value}'"
        )
    member = await repo.membership(session, access.project_id, user.id)
    if (
        member is not None
        and member.role == ProjectRole.OWNER.value
        and role is not ProjectRole.OWNER
    ):
        await _keep_an_owner(session, access.project_id)
    previous = member.role if member else None
    if member is None:
        member = Membership(project_id=access.project_id, user_id=user.id, role=role.value)
        session.add(member)
    else:
        member.role = role.value
    await session.flush()
    audit.record(
        session,
        action="projects.member_set",
        resource_type="membership",
        resource_id=f"{access.project_id}:{user.id}",
        details={
            "project": access.project_slug,
            "user_id": str(user.id),
            "from": previous,
            "to": role.value,
        },
        service=SERVICE,
    )
    publish(
        session,
        MembershipChanged.TYPE,
        MembershipChanged(
            project_id=access.project_id, project_slug=access.project_slug, user_id=user.id
        ),
    )
    return member, user


async def remove_member(session: AsyncSession, access: ProjectAccess, user_ref: str) -> None:
    user = await _user_by_ref(session, user_ref)
    member = await repo.membership(session, access.project_id, user.id)
    if member is None:
        raise NotFound("Membership not found")
    if member.role == ProjectRole.OWNER.value:
        await _keep_an_owner(session, access.project_id)
    await session.delete(member)
    audit.record(
        session,
        action="projects.member_remove",
        resource_type="membership",
        resource_id=f"{access.project_id}:{user.id}",
        details={"project": access.project_slug, "user_id": str(user.id)},
        service=SERVICE,
    )
    publish(
        session,
        MembershipChanged.TYPE,
        MembershipChanged(
            project_id=access.project_id, project_slug=access.project_slug, user_id=user.id
        ),
    )


async def _keep_an_owner(session: AsyncSession, project_id: uuid.UUID) -> None:
    if await repo.count_owners(session, project_id) <= 1:
        raise Conflict("A project must keep at least one owner")
