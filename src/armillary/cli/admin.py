"""Administrative actions run straight against the database, without a server.

The server application is imported inside each action, when it runs: importing it costs
seconds of CPU that ``armillary --help`` and the API commands must not pay.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from armillary.identity.audit.service import VerifyReport
    from armillary.kit.settings import Settings


class CommandError(Exception):
    pass


async def create_user(settings: Settings, email: str, name: str, role: str, password: str) -> UUID:
    """Create an account in the configured database; :class:`CommandError` on bad input."""
    from pydantic import ValidationError

    from armillary.app import create_runtime
    from armillary.identity.components import identity_of
    from armillary.identity.users import service as users_service
    from armillary.identity.users.schemas import UserCreate
    from armillary.kit.errors import DomainError

    runtime = create_runtime(settings)
    try:
        data = UserCreate.model_validate(
            {"email": email, "name": name, "role": role, "password": password}
        )
        async with runtime.db.unit_of_work() as session:
            user = await users_service.create(session, identity_of(runtime), data)
        return user.id
    except ValidationError as exc:
        raise CommandError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from exc
    except DomainError as exc:
        raise CommandError(exc.detail) from exc
    finally:
        await runtime.stop()


async def verify_audit(settings: Settings) -> VerifyReport:
    """Recompute the audit hash chain against its outside checkpoint."""
    from armillary.app import create_runtime
    from armillary.identity.components import identity_of

    runtime = create_runtime(settings)
    try:
        async with runtime.db.sessionmaker() as session:
            return await identity_of(runtime).audit_log.verify(session)
    finally:
        await runtime.stop()


async def rotate_keys(settings: Settings, *, immediately: bool = False) -> tuple[str, datetime]:
    """Make a new signing key, published now and signing after the publish lead (at once
    when ``immediately``); returns its key id and activation instant."""
    from armillary.app import create_runtime
    from armillary.identity.components import identity_of

    runtime = create_runtime(settings)
    try:
        async with runtime.db.unit_of_work() as session:
            rotation = await identity_of(runtime).keyring.schedule(session, immediately=immediately)
            return rotation.kid, rotation.activates_at
    finally:
        await runtime.stop()


async def retire_key(settings: Settings, kid: str) -> bool:
    """Retire an older signing key now (a leaked one, after `keys rotate --now`); False when
    ``kid`` is the newest key or not an unretired one."""
    from armillary.app import create_runtime
    from armillary.identity.components import identity_of

    runtime = create_runtime(settings)
    try:
        async with runtime.db.unit_of_work() as session:
            return await identity_of(runtime).keyring.retire(session, kid)
    finally:
        await runtime.stop()


async def rotate_secrets(settings: Settings) -> dict[str, int]:
    """Re-encrypt and re-sign under the current platform secret everything a previous one
    (``ARMILLARY_PREVIOUS_SECRET_KEYS``) protects. Each kind commits on its own: a run cut
    short is resumed by running it again, and a second run changes nothing."""
    from armillary.app import create_runtime
    from armillary.identity.components import identity_of
    from armillary.workflows.alerts.delivery import alerts_of
    from armillary.workflows.alerts.service import reseal_channels

    runtime = create_runtime(settings)
    try:
        identity = identity_of(runtime)
        async with runtime.db.unit_of_work() as session:
            signing_keys = await identity.keyring.reencrypt(session)
        async with runtime.db.unit_of_work() as session:
            channels = await reseal_channels(session, alerts_of(runtime).box)
        async with runtime.db.unit_of_work() as session:
            checkpoints = await identity.audit_log.resign(session)
        return {
            "signing_keys": signing_keys,
            "alert_channels": channels,
            "audit_checkpoints": checkpoints,
        }
    finally:
        await runtime.stop()
