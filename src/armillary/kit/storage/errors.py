"""Errors raised by the object store."""

from __future__ import annotations

from armillary.kit.errors import Forbidden, NotFound


class InvalidObjectKey(ValueError):
    """A key or key component that the platform does not build: a bug or an attack, never data."""


class ObjectNotFound(NotFound):
    """No object at the key. The detail never names the key, so no layout leaks to clients."""

    title = "Not found"

    def __init__(self, key: str) -> None:
        super().__init__("Object not found")
        self.key = key


class InvalidDownloadToken(Forbidden):
    """A local download token that is malformed, forged or for another secret."""

    title = "Invalid download link"


class DownloadTokenExpired(InvalidDownloadToken):
    """A genuine local download token whose expiry has passed."""

    title = "Download link expired"
