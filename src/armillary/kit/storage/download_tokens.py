"""Signed, expiring download tokens for the local backend (its stand-in for presigned URLs).

A token is ``<base64url(key)>.<expiry unix seconds>.<base64url(HMAC-SHA256)>``; the MAC covers
the key and the expiry, so neither can be changed without the secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Final

from armillary.kit.storage.errors import (
    DownloadTokenExpired,
    InvalidDownloadToken,
    InvalidObjectKey,
)
from armillary.kit.storage.keys import validate_key

# Derive a purpose-bound key so the platform secret, used elsewhere too, never MACs
# download tokens directly and a MAC made for another purpose cannot pass as a token.
_PURPOSE: Final = b"armillary/storage/local-download/v1"
_MIN_SECRET_LENGTH: Final = 16
_MAX_TOKEN_LENGTH: Final = 4096
# Strict shape (unpadded base64url, decimal expiry) so odd input is refused before decoding.
_TOKEN: Final = re.compile(r"([A-Za-z0-9_-]+)\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DownloadSigner:
    """Issues and checks download tokens with one secret."""

    def __init__(self, secret: str) -> None:
        if len(secret) < _MIN_SECRET_LENGTH:
            raise ValueError(f"download signing secret must be >= {_MIN_SECRET_LENGTH} characters")
        self._key = hmac.new(secret.encode("utf-8"), _PURPOSE, hashlib.sha256).digest()

    def _mac(self, key: str, expires: int) -> bytes:
        message = key.encode("ascii") + b"\n" + str(expires).encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def sign(self, key: str, expires_at: datetime) -> str:
        """Return a token granting a download of ``key`` until ``expires_at`` (timezone-aware)."""
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")
        validate_key(key)
        expires = int(expires_at.timestamp())
        mac = self._mac(key, expires)
        return f"{_b64encode(key.encode('ascii'))}.{expires}.{_b64encode(mac)}"

    def verify(self, token: str, *, now: datetime | None = None) -> str:
        """Return the key a token grants, or raise if it is malformed, forged or expired."""
        match = _TOKEN.fullmatch(token) if len(token) <= _MAX_TOKEN_LENGTH else None
        if match is None:
            raise InvalidDownloadToken()
        encoded_key, expires_text, encoded_mac = match.groups()
        try:
            key = _b64decode(encoded_key).decode("ascii")
            mac = _b64decode(encoded_mac)
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidDownloadToken() from None
        expires = int(expires_text)
        # Check the MAC before anything else reveals whether the token parsed as meaningful.
        if not hmac.compare_digest(mac, self._mac(key, expires)):
            raise InvalidDownloadToken()
        try:
            validate_key(key)
        except InvalidObjectKey:
            raise InvalidDownloadToken() from None
        current = now if now is not None else datetime.now(UTC)
        if current.timestamp() >= expires:
            raise DownloadTokenExpired()
        return key
