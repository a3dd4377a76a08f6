"""Signing keys: create, rotate, retire, publish as JWKS, and sign tokens."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import SigningKeysChanged
from armillary.kit.db import utcnow
from armillary.kit.events import publish
from armillary.kit.security import ALGORITHM

from ..tokens.models import PersonalAccessToken
from .models import SigningKey


def new_kid() -> str:
    """A signing key's id: hex, so it never starts with "-" (a base64url id did, one time
    in 64, and `armillary keys retire <kid>` then read it as an option)."""
    return secrets.token_hex(16)


class SigningKeyLocked(Exception):
    """No configured platform secret (current or previous) opens this signing key."""

    def __init__(self, kid: str) -> None:
        super().__init__(
            f"signing key {kid} does not open with ARMILLARY_SECRET_KEY or any of "
            "ARMILLARY_PREVIOUS_SECRET_KEYS"
        )
        self.kid = kid


@dataclass(frozen=True)
class ActiveKey:
    kid: str
    private_key: Ed25519PrivateKey


@dataclass(frozen=True)
class Rotation:
    """A key made by :meth:`KeyRing.schedule`: published at once, signing from ``activates_at``."""

    kid: str
    activates_at: datetime


async def keep_for_personal_tokens(session: AsyncSession) -> None:
    """A superseded key keeps verifying until the last live personal access token it signed
    expires (ADR 0040): they live up to 90 days, keys rotate more often."""
    last_expiry = (
        select(func.max(PersonalAccessToken.expires_at))
        .where(
            PersonalAccessToken.kid == SigningKey.kid,
            PersonalAccessToken.revoked_at.is_(None),
        )
        .scalar_subquery()
    )
    await session.execute(
        update(SigningKey)
        .where(
            SigningKey.active.is_(False),
            SigningKey.retired_at.is_(None),
            SigningKey.retires_at < last_expiry,
        )
        .values(retires_at=last_expiry)
        .execution_options(synchronize_session=False)
    )


def activation(row: SigningKey) -> datetime:
    # Keys made before two-phase rotation signed from their creation.
    return row.activates_at or row.created_at


class KeyRing:
    """Reads and changes the signing keys. Rotation is two-phase (ADR 0023): a new key is
    published in the JWKS ``publish_lead`` before it signs, so gateways that cache the JWKS
    know it first. The signing key is decrypted and kept for ``active_ttl`` seconds, and
    until the next key's activation instant, whichever comes first: another process's
    rotation reaches this one by an event, or at the latest when that time is up (the
    backstop when an event is lost)."""

    def __init__(
        self,
        secret: str,
        *,
        rotation: timedelta,
        grace: timedelta,
        publish_lead: timedelta = timedelta(0),
        active_ttl: float = 30.0,
        previous: Iterable[str] = (),
    ) -> None:
        self._password = secret.encode()
        # Platform secrets this one replaced: keys they encrypted still load until
        # `armillary secrets rotate` has encrypted them again under the current one.
        self._previous = [old.encode() for old in previous]
        self.rotation = rotation
        self.grace = grace
        self.publish_lead = publish_lead
        self.active_ttl = active_ttl
        self._active: ActiveKey | None = None
        self._loaded_at = 0.0
        # When a pending key starts signing: the cached key is stale from then on.
        self._next_activation: datetime | None = None

    async def active(self, session: AsyncSession) -> ActiveKey:
        if (
            self._active is not None
            and time.monotonic() - self._loaded_at < self.active_ttl
            and (self._next_activation is None or utcnow() < self._next_activation)
        ):
            return self._active
        now = utcnow()
        rows = await self._unretired(session)
        signing = [row for row in rows if activation(row) <= now]
        pending = [row for row in rows if activation(row) > now]
        if signing:
            row = max(signing, key=activation)
        elif pending:
            # Nothing may sign yet (every older key was retired by hand): better a key the
            # gateways may not know for a few seconds than no token at all.
            row = min(pending, key=activation)
            pending.remove(row)
        else:
            row = await self._create(session, activates_at=now)
        key, _ = self._load(row)
        self._active = ActiveKey(row.kid, key)
        self._loaded_at = time.monotonic()
        self._next_activation = min((activation(p) for p in pending), default=None)
        return self._active

    async def _unretired(self, session: AsyncSession) -> list[SigningKey]:
        return list(
            (await session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None)))).all()
        )

    def forget(self) -> None:
        self._active = None

    def _load(self, row: SigningKey) -> tuple[Ed25519PrivateKey, bool]:
        """The row's private key, and whether the current secret encrypted it."""
        for password in (self._password, *self._previous):
            try:
                key = serialization.load_pem_private_key(row.private_key, password=password)
            except ValueError:  # wrong password (or not this key's): try the next one
                continue
            assert isinstance(key, Ed25519PrivateKey)  # noqa: S101 - we only store Ed25519 keys
            return key, password == self._password
        raise SigningKeyLocked(row.kid)

    async def reencrypt(self, session: AsyncSession) -> int:
        """Encrypt under the current secret every unretired key a previous secret encrypted;
        returns how many. Each row is locked, so concurrent runs do each key once."""
        rows = (
            await session.scalars(
                select(SigningKey).where(SigningKey.retired_at.is_(None)).with_for_update()
            )
        ).all()
        changed = 0
        for row in rows:
            key, current = self._load(row)
            if current:
                continue
            row.private_key = self._encrypt(key)
            changed += 1
        return changed

    def _encrypt(self, key: Ed25519PrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(self._password),
        )

    async def ensure(self, session: AsyncSession) -> datetime | None:
        """Make sure a key exists, schedule the next one when rotation is due (two-phase,
        like any rotation), retire expired ones. Returns when there is next something to do
        (a retirement or a rotation), or None."""
        newest = await self._newest(session, lock=True)
        if newest is None:
            await self.schedule(session, immediately=True)  # nothing can have cached a key yet
        elif activation(newest) + self.rotation <= utcnow():
            await self.schedule(session)
        await self.retire_expired(session)
        rows = await self._unretired(session)
        newest = max(rows, key=activation)
        due = [row.retires_at for row in rows if row.retires_at is not None]
        return min([*due, activation(newest) + self.rotation])

    async def _newest(self, session: AsyncSession, *, lock: bool = False) -> SigningKey | None:
        """The newest unretired key. ``lock`` first locks every unretired row, so processes
        that check rotation at once take turns, and the later one sees the earlier's key."""
        if lock:
            await session.execute(
                select(SigningKey.kid).where(SigningKey.retired_at.is_(None)).with_for_update()
            )
        return max(await self._unretired(session), key=activation, default=None)

    async def rotate(self, session: AsyncSession, *, immediately: bool = False) -> str:
        """Schedule a new key (see :meth:`schedule`); returns its kid."""
        return (await self.schedule(session, immediately=immediately)).kid

    async def schedule(self, session: AsyncSession, *, immediately: bool = False) -> Rotation:
        """Make a new key, published now and signing after the publish lead (at once when
        ``immediately``: gateways may refuse its tokens until they refetch the JWKS). Every
        older key keeps verifying until the grace period after that activation."""
        now = utcnow()
        activates_at = now + (timedelta(0) if immediately else self.publish_lead)
        # A key still pending that would activate after this one never signs (else it would
        # take over from an emergency key): retire it at once.
        await session.execute(
            update(SigningKey)
            .where(
                SigningKey.active.is_(True),
                SigningKey.retired_at.is_(None),
                SigningKey.activates_at > activates_at,
            )
            .values(active=False, retires_at=now, retired_at=now)
        )
        await session.execute(
            update(SigningKey)
            .where(SigningKey.active.is_(True))
            .values(active=False, retires_at=activates_at + self.grace)
        )
        await keep_for_personal_tokens(session)
        row = await self._create(session, activates_at=activates_at)
        self._active = None
        publish(session, SigningKeysChanged.TYPE, SigningKeysChanged(active_kid=row.kid))
        return Rotation(row.kid, activates_at)

    async def retire(self, session: AsyncSession, kid: str) -> bool:
        """Retire an older key now; False (nothing done) for the newest key or a retired one."""
        result = await session.execute(
            update(SigningKey)
            .where(
                SigningKey.kid == kid,
                SigningKey.active.is_(False),
                SigningKey.retired_at.is_(None),
            )
            .values(retired_at=utcnow())
        )
        if not getattr(result, "rowcount", 1):
            return False  # the newest key, or retired already (perhaps by another process)
        self._active = None
        active = await self.active(session)
        publish(session, SigningKeysChanged.TYPE, SigningKeysChanged(active_kid=active.kid))
        return True

    async def retire_expired(self, session: AsyncSession) -> None:
        now = utcnow()
        rows = (
            await session.scalars(
                select(SigningKey).where(
                    SigningKey.active.is_(False),
                    SigningKey.retired_at.is_(None),
                    SigningKey.retires_at <= now,
                )
            )
        ).all()
        for row in rows:
            await self.retire(session, row.kid)

    async def jwks(self, session: AsyncSession) -> list[dict[str, Any]]:
        """Public keys that verify: the newest (pending ones too, so verifiers know a key
        before it signs), and older ones until their grace period ends."""
        now = utcnow()
        rows = (
            await session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None)))
        ).all()
        return [
            row.public_jwk
            for row in rows
            if row.active or row.retires_at is None or row.retires_at > now
        ]

    async def sign(self, session: AsyncSession, claims: dict[str, Any], *, typ: str) -> str:
        key = await self.active(session)
        return jwt.encode(
            claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": typ}
        )

    async def _create(self, session: AsyncSession, *, activates_at: datetime) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        kid = new_kid()
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
        row = SigningKey(
            kid=kid,
            private_key=self._encrypt(private),
            public_jwk=jwk,
            active=True,
            activates_at=activates_at,
        )
        session.add(row)
        await session.flush()
        return row
