"""Who is calling, and may they do this in this project.

Every service uses these dependencies. They ask the identity service through its client (an
:class:`AccessDirectory`) and cache the answers; identity events drop cached answers, so a
role change, a deactivation or a membership change applies on the caller's next request.

Job tokens (DESIGN §2: what a job's tasks call the API with) carry the claims ``scope: "job"``,
``job``, ``prj`` and ``act`` (the actions the token may perform), and ``task``/``att`` when
minted for one attempt. They act with the rights of the user who started the job, capped to
that one project and to ``act``: every other project is the same 404 as for a non-member,
platform-level routes (``require_platform_role``) refuse them, and an action outside ``act``
is a 403 whatever the starter's role. ``act`` never holds :data:`NEVER_FOR_JOB_TOKENS`: a
leaked job token cannot edit the project, its members or workflows, nor start jobs. Identity
refuses the token (401) once its job has ended or its attempt has lost its lease.

Personal access tokens (ADR 0040: typ ``pat+jwt``, ``scope: "pat"``, ``prj``) are scoped the
same way: one project, never platform-level or account routes, and the actions of
:data:`PERSONAL_TOKEN_ACTIONS` within the user's current role there. Identity is asked about
every request with one (like a job token), and refuses it once revoked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from uuid import UUID

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from armillary.contracts.events import (
    MembershipChanged,
    ProjectChanged,
    ProjectDeleted,
    SigningKeysChanged,
    UserChanged,
)
from armillary.contracts.identity import (
    JOB_TOKEN_SCOPE,
    JWKS,
    JobToken,
    PlatformRole,
    PrincipalInfo,
    ProjectAccessInfo,
    ProjectFields,
    ProjectRole,
)
from armillary.kit import context, edge, security_events
from armillary.kit.cache import Cache
from armillary.kit.errors import Forbidden, NotFound, Unauthorized
from armillary.kit.events import Delivery, EventBus
from armillary.kit.ids import parse_uuid
from armillary.kit.security import PERSONAL_TOKEN_SCOPE, TokenVerifier

_ROLE_RANK = {ProjectRole.VIEWER: 1, ProjectRole.EDITOR: 2, ProjectRole.OWNER: 3}

# Every project-scoped action and the least membership role that may perform it.
PROJECT_ACTIONS: dict[str, ProjectRole] = {
    "project:read": ProjectRole.VIEWER,
    "project:update": ProjectRole.EDITOR,
    "project:delete": ProjectRole.OWNER,
    "members:read": ProjectRole.VIEWER,
    "members:manage": ProjectRole.OWNER,
    "dataset:read": ProjectRole.VIEWER,
    "dataset:write": ProjectRole.EDITOR,
    "workflow:read": ProjectRole.VIEWER,
    "workflow:write": ProjectRole.EDITOR,
    "dataset:delete": ProjectRole.EDITOR,
    "job:read": ProjectRole.VIEWER,
    "job:run": ProjectRole.EDITOR,
    "job:report": ProjectRole.EDITOR,
    "model:read": ProjectRole.VIEWER,
    "model:write": ProjectRole.EDITOR,
    "model:delete": ProjectRole.EDITOR,
    "model:alias": ProjectRole.EDITOR,
    "deployment:read": ProjectRole.VIEWER,
    "deployment:write": ProjectRole.EDITOR,
    # Experiment tracking (experiments, runs and what they log).
    "run:read": ProjectRole.VIEWER,
    "run:write": ProjectRole.EDITOR,
}

# What every job token may do (within the starter's role): read the project's data, write its
# outputs (dataset versions, quality reports), register model versions, report its progress,
# and track its training as runs.
JOB_TOKEN_ACTIONS = frozenset(
    {
        "project:read",
        "members:read",
        "dataset:read",
        "dataset:write",
        "workflow:read",
        "job:read",
        "job:report",
        "model:read",
        "model:write",
        "deployment:read",
        "run:read",
        "run:write",
    }
)
# What no job token may do, whatever its task type declares.
NEVER_FOR_JOB_TOKENS = frozenset(
    {"project:update", "project:delete", "members:manage", "workflow:write", "job:run"}
)


# What a personal access token may do, within its user's role in its project: everything but
# deleting the project and managing its members, which stay with a signed-in person.
PERSONAL_TOKEN_ACTIONS = frozenset(PROJECT_ACTIONS) - {"project:delete", "members:manage"}


def job_token_actions(extra: Iterable[str] = ()) -> frozenset[str]:
    """The actions of a job token whose task type declares ``extra`` (e.g. ``model:alias``).
    ``ValueError`` for an unknown action or one no job token may hold."""
    extra = frozenset(extra)
    unknown = extra - PROJECT_ACTIONS.keys()
    forbidden = extra & NEVER_FOR_JOB_TOKENS
    if unknown or forbidden:
        raise ValueError(f"actions a job token cannot hold: {sorted(unknown | forbidden)}")
    return JOB_TOKEN_ACTIONS | extra


class AccessDirectory(Protocol):
    """What kit needs from the identity service (implemented by ``identity.client``)."""

    async def jwks(self) -> JWKS: ...
    async def principal(self, token: str) -> PrincipalInfo | None: ...
    async def project_access(self, token: str, project: str) -> ProjectAccessInfo | None: ...
    async def issue_job_token(
        self,
        *,
        user_id: UUID,
        project_id: UUID,
        job_id: UUID,
        ttl_seconds: int,
        task: str | None = None,
        attempt: int | None = None,
        task_type: str | None = None,
        datasets_read: list[str] | None = None,
        datasets_write: list[str] | None = None,
    ) -> JobToken: ...


@dataclass(frozen=True, slots=True)
class TokenScope:
    """What a job token is limited to: one project, some actions, and while its job (and its
    attempt, when ``task`` is set) runs. For a personal access token ``job_id`` is None and
    ``token_id`` is its ``jti``: one project, its actions, until it expires or is revoked."""

    job_id: UUID | None
    project_id: UUID
    actions: frozenset[str]
    task: str | None = None
    attempt: int | None = None
    # The datasets its job names (read, written); None: not limited by name.
    datasets_read: frozenset[str] | None = None
    datasets_write: frozenset[str] | None = None
    token_id: str | None = None

    @property
    def is_personal(self) -> bool:
        return self.job_id is None


def _names(value: Any) -> frozenset[str] | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Unauthorized("Invalid token")
    return frozenset(value)


def token_scope(claims: dict[str, Any]) -> TokenScope | None:
    """The job scope of a verified token, None for a user's own token. A token that names a
    scope without spelling it out completely is invalid (401), never unscoped."""
    if not ({"scope", "job", "prj", "act", "task", "att"} & claims.keys()):
        return None
    if claims.get("scope") == PERSONAL_TOKEN_SCOPE:
        return _personal_scope(claims)
    if claims.get("scope") != JOB_TOKEN_SCOPE:
        raise Unauthorized("Invalid token")
    job_id = parse_uuid(str(claims.get("job", "")))
    project_id = parse_uuid(str(claims.get("prj", "")))
    actions = claims.get("act")
    task, attempt = claims.get("task"), claims.get("att")
    if (
        job_id is None
        or project_id is None
        or not isinstance(actions, list)
        or not all(isinstance(a, str) for a in actions)
        or not frozenset(actions) <= PROJECT_ACTIONS.keys() - NEVER_FOR_JOB_TOKENS
        or (task is None) != (attempt is None)
        or (task is not None and not isinstance(task, str))
        or (attempt is not None and (not isinstance(attempt, int) or isinstance(attempt, bool)))
    ):
        raise Unauthorized("Invalid token")
    if ("dsr" in claims) != ("dsw" in claims):
        raise Unauthorized("Invalid token")
    read = _names(claims["dsr"]) if "dsr" in claims else None
    write = _names(claims["dsw"]) if "dsw" in claims else None
    return TokenScope(job_id, project_id, frozenset(actions), task, attempt, read, write)


def _personal_scope(claims: dict[str, Any]) -> TokenScope:
    """A personal access token names its project and nothing of a job's."""
    project_id = parse_uuid(str(claims.get("prj", "")))
    jti = claims.get("jti")
    if (
        project_id is None
        or not isinstance(jti, str)
        or {"job", "act", "task", "att", "dsr", "dsw"} & claims.keys()
    ):
        raise Unauthorized("Invalid token")
    return TokenScope(None, project_id, PERSONAL_TOKEN_ACTIONS, token_id=jti)


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: UUID
    email: str
    name: str
    role: PlatformRole
    token: str  # forwarded to other services on the caller's behalf; never logged
    # Set for a job token: the job it was issued for, the one project it may act in, and the
    # actions it may perform there. A personal access token sets the last two, not the job.
    job_id: UUID | None = None
    scope_project_id: UUID | None = None
    job_actions: frozenset[str] = frozenset()
    # For a job token: the datasets its job names as read and written (None: any).
    job_datasets_read: frozenset[str] | None = None
    job_datasets_write: frozenset[str] | None = None
    # For a job token minted for one attempt: the task it runs (a run it starts is linked to it).
    job_task: str | None = None

    def may_touch_dataset(self, name: str, *, write: bool) -> bool:
        """Whether this principal may read (or write) dataset ``name`` by name: a job token
        only the datasets its job names; anyone else, as their role allows."""
        if not self.is_job or self.job_datasets_write is None:
            return True
        if write:
            return name in self.job_datasets_write
        return name in self.job_datasets_write | (self.job_datasets_read or frozenset())

    @property
    def readable_dataset_names(self) -> frozenset[str] | None:
        """The dataset names this principal may read, or None for "as the role allows"
        (lists filter on it in the query, so pages and totals count only those)."""
        if not self.is_job or self.job_datasets_write is None:
            return None
        return self.job_datasets_write | (self.job_datasets_read or frozenset())

    @property
    def is_job(self) -> bool:
        return self.job_id is not None

    @property
    def is_scoped(self) -> bool:
        """A job token or a personal access token: one project, no platform-level routes."""
        return self.scope_project_id is not None

    @property
    def is_admin(self) -> bool:
        """Admin rights; never through a job or personal access token, whoever holds it."""
        return self.role is PlatformRole.ADMIN and not self.is_scoped


@dataclass(frozen=True, slots=True)
class ProjectAccess:
    principal: Principal
    project_id: UUID
    project_slug: str
    role: ProjectRole
    # The project's fields as the access answer carried them (None: ask the database).
    fields: ProjectFields | None = None

    def allows(self, action: str) -> bool:
        if self.principal.is_scoped and action not in self.principal.job_actions:
            return False
        return _ROLE_RANK[self.role] >= _ROLE_RANK[PROJECT_ACTIONS[action]]


class AccessControl:
    """Token verification plus cached principal and project-access lookups."""

    def __init__(
        self, verifier: TokenVerifier, directory: AccessDirectory, cache: Cache, *, ttl: int
    ) -> None:
        self.verifier = verifier
        self.directory = directory
        self.cache = cache
        self.ttl = ttl

    async def principal(self, token: str, claims: dict[str, Any] | None = None) -> Principal:
        """The verified, active caller (401 otherwise)."""
        principal, _ = await self._lookup(token, claims, None)
        return principal

    async def project_access(
        self, token: str, project: str, claims: dict[str, Any] | None = None
    ) -> ProjectAccess:
        """The caller and their effective role in ``project`` (404 when they may not see it).
        Both answers come from the cache in one round trip when they are there."""
        principal, info = await self._lookup(token, claims, project)
        if info is None:
            security_events.mark_denied_project(project, principal.user_id)
            raise NotFound("Project not found")
        return ProjectAccess(principal, info.project_id, info.project_slug, info.role, info.project)

    async def _lookup(
        self, token: str, claims: dict[str, Any] | None, project: str | None
    ) -> tuple[Principal, ProjectAccessInfo | None]:
        if claims is None:
            claims = await self.verifier.verify(token)
        scope = token_scope(claims)
        user_id = claims["sub"]
        keys = [f"principal:{user_id}"]
        if project is not None:
            keys.append(f"access:{user_id}:{project}")
        cached = await self.cache.get_many(keys)
        if cached[0] is not None and scope is None:
            info = PrincipalInfo.model_validate(cached[0])
        else:
            # A job token is asked about every time: identity refuses it once its job ended or
            # its attempt lost the lease, which no cached answer about the user would know. A
            # personal access token too: its revocation applies at once in every process.
            found = await self.directory.principal(token)
            if found is None:
                raise Unauthorized("Invalid token")
            info = found
            if scope is None:
                await self.cache.set(keys[0], info.model_dump(mode="json"), self.ttl)
        if not info.active or str(info.user_id) != user_id:
            raise Unauthorized("Invalid token")
        principal = Principal(
            info.user_id,
            info.email,
            info.name,
            info.role,
            token,
            job_id=scope.job_id if scope else None,
            scope_project_id=scope.project_id if scope else None,
            job_actions=scope.actions if scope else frozenset(),
            job_datasets_read=scope.datasets_read if scope else None,
            job_datasets_write=scope.datasets_write if scope else None,
            job_task=scope.task if scope else None,
        )
        if project is None:
            return principal, None
        if scope is not None:
            return principal, await self._scoped_access(token, user_id, project, scope, cached[1])
        if cached[1] is not None:
            access = None if cached[1] == "none" else ProjectAccessInfo.model_validate(cached[1])
            return principal, access
        access = await self.directory.project_access(token, project)
        value = "none" if access is None else access.model_dump(mode="json")
        await self.cache.set(keys[1], value, self.ttl)
        if access is not None and access.project_slug != project:
            # Looked up by id: cache under the slug too, so slug-keyed events find it.
            await self.cache.set(f"access:{user_id}:{access.project_slug}", value, self.ttl)
        return principal, access

    async def _scoped_access(
        self, token: str, user_id: str, project: str, scope: TokenScope, cached: Any
    ) -> ProjectAccessInfo | None:
        """A job token's access to ``project``: the starter's current access there (cached
        per user and project, like any answer), and none at all outside the token's project.
        The scope check applies to cached answers too, so the user's own access to another
        project never lends itself to the job token."""
        ref_id = parse_uuid(project)
        if ref_id is not None and ref_id != scope.project_id:
            return None
        if cached is not None:
            if cached == "none":
                return None
            known = ProjectAccessInfo.model_validate(cached)
            return known if known.project_id == scope.project_id else None
        access = await self.directory.project_access(token, project)
        if access is None or access.project_id != scope.project_id:
            # Not cached: identity refuses a job token every other project whatever the user's
            # membership, so this "no" says nothing about the user's own access.
            return None
        value = access.model_dump(mode="json")
        await self.cache.set(f"access:{user_id}:{project}", value, self.ttl)
        if access.project_slug != project:
            await self.cache.set(f"access:{user_id}:{access.project_slug}", value, self.ttl)
        return access

    def subscribe_invalidations(self, bus: EventBus) -> None:
        """Drop cached answers when identity says they changed: broadcast, so every process
        drops its own (ADR 0020)."""

        async def user_changed(delivery: Delivery) -> None:
            event = UserChanged.model_validate(delivery.payload)
            await self.cache.delete(f"principal:{event.user_id}")
            await self.cache.delete_pattern(f"access:{event.user_id}:*")

        async def membership_changed(delivery: Delivery) -> None:
            event = MembershipChanged.model_validate(delivery.payload)
            await self.cache.delete(
                f"access:{event.user_id}:{event.project_slug}",
                f"access:{event.user_id}:{event.project_id}",
            )

        async def project_changed(delivery: Delivery) -> None:
            event = ProjectChanged.model_validate(delivery.payload)
            await self.forget_project(event.project_id, event.project_slug)

        async def project_deleted(delivery: Delivery) -> None:
            event = ProjectDeleted.model_validate(delivery.payload)
            await self.forget_project(event.project_id, event.project_slug)

        async def keys_changed(_delivery: Delivery) -> None:
            self.verifier.keys.invalidate()

        async def drop_all() -> None:
            self.verifier.keys.invalidate()
            await self.cache.delete_pattern("principal:*")
            await self.cache.delete_pattern("access:*")

        bus.broadcast(SigningKeysChanged.TYPE, "kit.jwks_cache", keys_changed, drop_all=drop_all)
        bus.broadcast(UserChanged.TYPE, "kit.access_cache", user_changed, drop_all=drop_all)
        bus.broadcast(
            MembershipChanged.TYPE, "kit.access_cache", membership_changed, drop_all=drop_all
        )
        bus.broadcast(ProjectChanged.TYPE, "kit.access_cache", project_changed, drop_all=drop_all)
        bus.broadcast(ProjectDeleted.TYPE, "kit.access_cache", project_deleted, drop_all=drop_all)

    async def forget_project(self, project_id: UUID, project_slug: str) -> None:
        """Drop every cached access answer about the project (they carry its fields)."""
        await self.cache.delete_pattern(f"access:*:{project_slug}")
        await self.cache.delete_pattern(f"access:*:{project_id}")


def _access_control(request: Request) -> AccessControl:
    access: AccessControl = request.app.state.runtime.access
    return access


_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/v1/auth/token")


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """FastAPI dependency: the verified, active caller, or 401."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("Missing bearer token")
    claims = getattr(request.state, "token_claims", None)
    principal = await _access_control(request).principal(credentials.credentials, claims)
    ctx = context.current()
    if ctx is not None:
        ctx.user_id = principal.user_id
    return principal


def require_platform_role(*roles: PlatformRole) -> Any:
    """Dependency factory: the caller must hold one of ``roles`` (admins always may)."""

    @edge.mark(admin_only=not roles, job_tokens=False)
    async def dependency(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if principal.is_scoped:
            raise Forbidden(f"{_scoped_kind(principal)} cannot call platform-level routes")
        if not principal.is_admin and principal.role not in roles:
            raise Forbidden("Your role does not allow this")
        return principal

    return dependency


def refuse_job_tokens(activity: str) -> Any:
    """Dependency factory: the caller, unless it holds a job or personal access token (403
    "Job tokens cannot ``activity``"). For routes that act on the account itself, such as a
    password change or issuing a personal access token."""

    @edge.mark(job_tokens=False)
    async def dependency(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
        if principal.is_scoped:
            raise Forbidden(f"{_scoped_kind(principal)} cannot {activity}")
        return principal

    return dependency


def _scoped_kind(principal: Principal) -> str:
    return "Job tokens" if principal.is_job else "Personal access tokens"


def project_permission(action: str) -> Any:
    """Dependency factory: the caller's access to the project in path parameter ``project``
    (slug or id), after checking it allows ``action``. Non-members get 404, members without
    the right 403."""
    if action not in PROJECT_ACTIONS:
        raise KeyError(f"unknown project action {action!r}")

    @edge.mark(job_tokens=action not in NEVER_FOR_JOB_TOKENS)
    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        project: Annotated[str, Path(description="Project slug or id", max_length=64)],
    ) -> ProjectAccess:
        if credentials is None or not credentials.credentials:
            raise Unauthorized("Missing bearer token")
        claims = getattr(request.state, "token_claims", None)
        access = await _access_control(request).project_access(
            credentials.credentials, project, claims
        )
        ctx = context.current()
        if ctx is not None:
            ctx.user_id = access.principal.user_id
        if not access.allows(action):
            if access.principal.is_job:
                raise Forbidden(f"A job token does not allow {action}")
            if access.principal.is_scoped:
                raise Forbidden(f"A personal access token does not allow {action}")
            raise Forbidden(f"Your role in this project does not allow {action}")
        return access

    return dependency


def dataset_permission(action: str, *, as_reader: bool | None = None) -> Any:
    """Like :func:`project_permission`, for a route under ``/datasets/{dataset}``: a job
    token may also touch only the datasets its job names (read: those it reads or writes;
    anything else: those it writes). ``as_reader``: the action needs only a read of the
    name (a quality report on a dataset the job reads). Another dataset is a 404."""
    project_dependency = project_permission(action)
    write = action != "dataset:read" if as_reader is None else not as_reader

    # Defaults, not Annotated: the annotations are strings here (PEP 563), and a local name
    # in one could not be resolved by FastAPI.
    async def dependency(
        access: ProjectAccess = Depends(project_dependency),
        dataset: str = Path(description="Dataset name", max_length=128),
    ) -> ProjectAccess:
        if not access.principal.may_touch_dataset(dataset, write=write):
            raise NotFound("Dataset not found")
        return access

    return dependency


Caller = Annotated[Principal, Depends(authenticated)]
