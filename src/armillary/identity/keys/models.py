from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit.db import Base, UTCDateTime, utcnow


class SigningKey(Base):
    """An Ed25519 key pair. The newest one is ``active``: published at once, it signs from
    ``activates_at`` on (two-phase rotation, ADR 0023); previous keys only verify until
    ``retires_at``."""

    __tablename__ = "identity_signing_keys"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    # PKCS#8, encrypted with a key derived from the platform secret.
    private_key: Mapped[bytes] = mapped_column(LargeBinary)
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    active: Mapped[bool] = mapped_column(default=True)
    # Null for keys made before two-phase rotation: they signed from ``created_at``.
    activates_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
