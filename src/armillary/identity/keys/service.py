"""Signing keys: create, rotate, retire, publish as JWKS, and sign tokens."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import SigningKeysChanged
from armillary.kit.db import utcnow
from armillary.kit.events import publish
from armillary.kit.security import ALGORITHM

from .models import SigningKey


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


class KeyRing:
    """Reads and changes the signing keys. The active private key is decrypted and kept for
    ``active_ttl`` seconds: another process's rotation reaches this one by an event, or at
    the latest when that time is up (the backstop when an event is lost)."""

    def __init__(
        self,
        secret: str,
        *,
        rotation: timedelta,
        grace: timedelta,
        active_ttl: float = 30.0,
        previous: Iterable[str] = (),
    ) -> None:
        self._password = secret.encode()
        # Platform secrets this one replaced: keys they encrypted still load until
        # `armillary secrets rotate` has encrypted them again under the current one.
        self._previous = [old.encode() for old in previous]
        self.rotation = rotation
        self.grace = grace
        self.active_ttl = active_ttl
        self._active: ActiveKey | None = None
        self._loaded_at = 0.0

    async def active(self, session: AsyncSession) -> ActiveKey:
        if self._active is not None and time.monotonic() - self._loaded_at < self.active_ttl:
            return self._active
        row = await session.scalar(
            select(SigningKey)
            .where(SigningKey.active.is_(True))
            .order_by(SigningKey.created_at.desc())
        )
        if row is None:
            row = await self._create(session)
        key, _ = self._load(row)
        self._active = ActiveKey(row.kid, key)
        self._loaded_at = time.monotonic()
        return self._active

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

    async def ensure(self, session: AsyncSession) -> None:
        """Make sure an active key exists, rotate it when it is due, retire expired ones."""
        row = await session.scalar(
            select(SigningKey)
            .where(SigningKey.active.is_(True))
            .order_by(SigningKey.created_at.desc())
        )
        if row is None or row.created_at + self.rotation <= utcnow():
            await self.rotate(session)
        await self.retire_expired(session)

    async def rotate(self, session: AsyncSession) -> str:
        """Make a new active key; the old one keeps verifying for the grace period."""
        now = utcnow()
        await session.execute(
            update(SigningKey)
            .where(SigningKey.active.is_(True))
            .values(active=False, retires_at=now + self.grace)
        )
        row = await self._create(session)
        self._active = None
        publish(session, SigningKeysChanged.TYPE, SigningKeysChanged(active_kid=row.kid))
        return row.kid

    async def retire(self, session: AsyncSession, kid: str) -> None:
        await session.execute(
            update(SigningKey)
            .where(SigningKey.kid == kid, SigningKey.active.is_(False))
            .values(retired_at=utcnow())
        )
        active = await self.active(session)
        publish(session, SigningKeysChanged.TYPE, SigningKeysChanged(active_kid=active.kid))

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
        """Public keys that still verify: the active one and those in their grace period."""
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

    async def _create(self, session: AsyncSession) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        kid = secrets.token_urlsafe(16)
        jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
        jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
        row = SigningKey(
            kid=kid,
            private_key=self._encrypt(private),
            public_jwk=jwk,
            active=True,
        )
        session.add(row)
        await session.flush()
        return row
