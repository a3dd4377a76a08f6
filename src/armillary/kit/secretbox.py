"""Authenticated encryption of small secrets kept in the database (webhook URLs, passwords,
routing keys): AES-256-GCM with a key derived from the platform secret.

Each use has its own purpose label, so a key derived for one purpose cannot open another's
values. Callers bind a ciphertext to its row with associated data (for example the row's id):
a value copied into another row does not decrypt there. The format is versioned::

    v1.<base64url(nonce[12] || ciphertext || tag[16])>

so the scheme can change without a flag day: old values keep decrypting while new ones are
written with the newest version. A platform secret that was rotated can be given as
``previous`` secrets: values written under it still decrypt (and are re-encrypted on write).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"
_NONCE_BYTES = 12
_TAG_BYTES = 16
_SALT = b"armillary.secretbox"
HINT_CHARS = 4


class SecretBoxError(Exception):
    """A value could not be decrypted: malformed, of an unknown version, tampered with, bound
    to other associated data, or written under a key this box does not have."""


def derive_key(secret: str, purpose: str) -> bytes:
    """A 256-bit key for ``purpose`` from the platform secret (HKDF-SHA256)."""
    if not purpose:
        raise ValueError("a purpose label is required")
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=_SALT,
        info=f"armillary.secretbox.{VERSION}:{purpose}".encode(),
    )
    return hkdf.derive(secret.encode())


class SecretBox:
    """Encrypts and decrypts small values for one purpose."""

    def __init__(self, secret: str, purpose: str, *, previous: Iterable[str] = ()) -> None:
        self.purpose = purpose
        self._current = AESGCM(derive_key(secret, purpose))
        self._previous = [AESGCM(derive_key(old, purpose)) for old in previous]

    def encrypt(self, plaintext: str | bytes, *, associated_data: bytes = b"") -> str:
        data = plaintext.encode() if isinstance(plaintext, str) else plaintext
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._current.encrypt(nonce, data, self._aad(associated_data))
        return f"{VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, *, associated_data: bytes = b"") -> bytes:
        version, sep, body = token.partition(".")
        if not sep or version != VERSION:
            raise SecretBoxError("unknown secret format")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
        except (binascii.Error, ValueError):
            raise SecretBoxError("malformed secret") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise SecretBoxError("malformed secret")
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        aad = self._aad(associated_data)
        for cipher in (self._current, *self._previous):
            try:
                return cipher.decrypt(nonce, sealed, aad)
            except InvalidTag:
                continue
        raise SecretBoxError("secret does not decrypt with this key")

    def reseal(self, token: str, *, associated_data: bytes = b"") -> str | None:
        """``token`` encrypted again under the current key when a previous key wrote it;
        None when the current key already opens it (``armillary secrets rotate``)."""
        version, _, body = token.partition(".")
        if version == VERSION:
            try:
                raw = base64.urlsafe_b64decode(body.encode())
                self._current.decrypt(
                    raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], self._aad(associated_data)
                )
                return None
            except (binascii.Error, ValueError, InvalidTag):
                pass
        plaintext = self.decrypt(token, associated_data=associated_data)
        return self.encrypt(plaintext, associated_data=associated_data)

    def decrypt_text(self, token: str, *, associated_data: bytes = b"") -> str:
        return self.decrypt(token, associated_data=associated_data).decode()

    def _aad(self, associated_data: bytes) -> bytes:
        # The purpose and version are authenticated too, not only used to derive the key.
        return f"{VERSION}:{self.purpose}:".encode() + associated_data


def mask(secret: str, visible: int = HINT_CHARS) -> str:
    """A hint that identifies a secret without revealing it: ``"…abcd"`` (its last characters,
    none at all for short values, where they would be most of it)."""
    if len(secret) < visible * 3:
        return "…"
    return "…" + secret[-visible:]
