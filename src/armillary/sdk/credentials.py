"""The credentials ``armillary login`` keeps: the server URL and the token pair, in
``$ARMILLARY_CONFIG_DIR/credentials.json`` (default ``~/.config/armillary``), readable by the
owner only. The CLI and the tracking SDK (outside a task) both sign in with them."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .types import Tokens

CREDENTIALS_FILE = "credentials.json"
URL_ENV = "ARMILLARY_URL"
TOKEN_ENV = "ARMILLARY_TOKEN"  # noqa: S105 - the name of a variable, not a secret
CONFIG_DIR_ENV = "ARMILLARY_CONFIG_DIR"


class UnreadableCredentials(ValueError):
    """The credentials file exists but cannot be read."""


@dataclass(frozen=True)
class Credentials:
    """What ``armillary login`` stores: the server and the token pair it issued."""

    url: str
    email: str
    access_token: str
    refresh_token: str | None
    expires_at: float | None

    def with_tokens(self, tokens: Tokens) -> Credentials:
        """The same sign-in with a renewed token pair."""
        return replace(
            self,
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            expires_at=tokens.expires_at,
        )


def config_dir() -> Path:
    """Where the CLI keeps its files: ``$ARMILLARY_CONFIG_DIR`` or ``~/.config/armillary``."""
    configured = os.environ.get(CONFIG_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path("~/.config/armillary").expanduser()


def credentials_path() -> Path:
    """The credentials file."""
    return config_dir() / CREDENTIALS_FILE


def load_credentials() -> Credentials | None:
    """The stored credentials, or ``None`` if there are none; :class:`UnreadableCredentials`
    when the file is there but broken."""
    path = credentials_path()
    try:
        raw: Any = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(
            url=str(raw["url"]),
            email=str(raw.get("email", "")),
            access_token=str(raw["access_token"]),
            refresh_token=raw.get("refresh_token"),
            expires_at=raw.get("expires_at"),
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableCredentials(f"Cannot read {path}; run `armillary login` again") from exc


def save_credentials(credentials: Credentials) -> Path:
    """Write the credentials file, readable and writable by the owner only (0600).

    The file is written beside its final name and renamed over it, so it is never seen
    half-written or, even briefly, with wider permissions.
    """
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / CREDENTIALS_FILE
    temporary = directory / f".{CREDENTIALS_FILE}.{secrets.token_hex(4)}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(asdict(credentials), file, indent=2)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
