from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import OAuth2PasswordRequestForm

from armillary.contracts.identity import JWKS, PlatformRole, PrincipalInfo
from armillary.kit.authz import Caller, Principal, refuse_job_tokens
from armillary.kit.deps import ReadSession, Session

from ..components import current_identity
from ..users import service as users_service
from ..users.schemas import PasswordChange, UserOut
from . import service
from .deps import DirectUser
from .schemas import LogoutRequest, RefreshRequest, TokenPair

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

PasswordForm = Annotated[OAuth2PasswordRequestForm, Depends()]
# A job's tasks must not sign the starter out everywhere nor change their password.
SignedOut = Annotated[Principal, Depends(refuse_job_tokens("sign the account out"))]
PasswordChanger = Annotated[Principal, Depends(refuse_job_tokens("change a password"))]


@router.post("/token", name="auth.login", responses={401: {}, 429: {}})
async def issue_token(request: Request, form: PasswordForm, session: Session) -> TokenPair:
    """OAuth2 password grant: ``username`` is the email address."""
    return await service.login(session, current_identity(request), form.username, form.password)


@router.post("/refresh", name="auth.refresh", responses={401: {}})
async def refresh_token(request: Request, body: RefreshRequest, session: Session) -> TokenPair:
    """Rotate a refresh token. Presenting an already rotated token revokes its whole family."""
    return await service.refresh(session, current_identity(request), body.refresh_token)


@router.post("/logout", name="auth.logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    request: Request, caller: SignedOut, session: Session, body: LogoutRequest | None = None
) -> None:
    """Revoke the given refresh token's family, or all of the caller's refresh tokens."""
    token = body.refresh_token if body else None
    await service.logout(session, current_identity(request), caller.user_id, token)


@router.get("/me", name="auth.me")
async def me(caller: Caller, session: ReadSession) -> UserOut:
    return UserOut.model_validate(await users_service.get(session, caller.user_id))


@router.post("/password", name="auth.password_change", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    request: Request, body: PasswordChange, caller: PasswordChanger, session: Session
) -> None:
    """Change one's own password; every refresh token of the account is revoked."""
    await users_service.change_password(
        session,
        current_identity(request),
        caller.user_id,
        body.current_password.get_secret_value(),
        body.new_password.get_secret_value(),
    )


@router.get("/jwks", name="auth.jwks")
async def jwks(request: Request, session: ReadSession) -> JWKS:
    """Public keys that verify access tokens (RFC 7517)."""
    return JWKS(keys=await current_identity(request).keyring.jwks(session))


@router.get("/principal", name="auth.principal")
async def principal(user: DirectUser) -> PrincipalInfo:
    """The caller's current account state, read uncached; services cache it themselves."""
    return PrincipalInfo(
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=PlatformRole(user.role),
        active=user.active,
    )
