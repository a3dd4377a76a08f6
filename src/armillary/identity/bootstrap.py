"""First start: the first admin comes from configuration, or gets a random password that is
printed once (to the terminal, never to the logs)."""

from __future__ import annotations

import asyncio
import secrets
import sys

from sqlalchemy.exc import IntegrityError

from armillary.contracts.identity import PlatformRole
from armillary.kit import audit

from .components import SERVICE, Identity
from .users import repository as users
from .users.models import User


async def ensure_first_admin(identity: Identity) -> None:
    settings = identity.settings
    async with identity.runtime.db.sessionmaker() as session:
        if await users.count(session) > 0:
            return
    configured = settings.admin_password
    generated = configured is None
    password = configured.get_secret_value() if configured else secrets.token_urlsafe(18)
    password_hash = await asyncio.to_thread(identity.passwords.hash, password)
    email = settings.admin_email.strip().lower()
    try:
        async with identity.runtime.db.unit_of_work() as session:
            if await users.count(session) > 0:
                return
            user = await users.add(
                session,
                User(
                    email=email,
                    name="Administrator",
                    role=PlatformRole.ADMIN.value,
                    active=True,
                    password_hash=password_hash,
                ),
            )
            audit.record(
                session,
                action="users.bootstrap_admin",
                resource_type="user",
                resource_id=user.id,
                details={"email": email},
                service=SERVICE,
            )
    except IntegrityError:
        return  # another replica created it first
    if generated:
        sys.stdout.write(
            "\n  Armillary created the first admin account. This password is shown only once:\n"
            f"    email:    {email}\n    password: {password}\n\n"
        )
        sys.stdout.flush()


async def ensure_signing_key(identity: Identity) -> None:
    async with identity.runtime.db.unit_of_work() as session:
        await identity.keyring.ensure(session)
