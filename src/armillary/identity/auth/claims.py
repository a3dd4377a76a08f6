"""The registered claims (RFC 7519 §4.1) of every token identity signs: access, refresh, job
and personal access tokens differ only in their lifetime and their private claims."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from armillary.kit.db import utcnow
from armillary.kit.settings import Settings


@dataclass(frozen=True)
class Registered:
    """A new token's registered claims; ``claims()`` adds the token's own."""

    settings: Settings
    subject: uuid.UUID
    issued_at: datetime
    expires_at: datetime
    jti: str

    @classmethod
    def lasting(cls, settings: Settings, subject: uuid.UUID, lifetime: timedelta) -> Registered:
        now = utcnow()
        # Whole seconds: "exp" is a NumericDate, and expires_at must say exactly when it lapses.
        expires_at = (now + lifetime).replace(microsecond=0)
        return cls(settings, subject, now, expires_at, uuid.uuid4().hex)

    def claims(self, **private: Any) -> dict[str, Any]:
        return {
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "sub": str(self.subject),
            "iat": self.issued_at,
            "exp": self.expires_at,
            "jti": self.jti,
            **private,
        }
