"""Channel secrets kept in a secret manager or a file rather than in the database.

A secret setting given as ``{"secret_ref": "aws-secretsmanager:NAME_OR_ARN#key"}`` or
``{"secret_ref": "file:/path"}`` is stored as that reference (sealed with the channel's other
secrets) and read at each send through :mod:`armillary.kit.secret_sources`: Secrets Manager
values are cached for ``ARMILLARY_SECRETS_CACHE_TTL_SECONDS``, and read again at once when the
receiver refuses a send, so a rotated secret is used without waiting for the cache.

Which references a project may use is the operator's choice
(``ARMILLARY_WORKFLOWS_ALERT_SECRET_REF_PREFIXES``): whoever edits a channel chooses where its
secrets are sent, so a free reference would let any project editor mail the platform's own
database password to themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from armillary.kit.errors import Unprocessable
from armillary.kit.secret_sources import REFERENCE_SCHEMES, SecretRef, SecretSourceError

from .senders import SendError

_SECRETS_MANAGER = REFERENCE_SCHEMES["secretsmanager"]
_FILE = REFERENCE_SCHEMES["file"]


def references(secrets: Mapping[str, Any]) -> dict[str, str]:
    """The secret settings of ``secrets`` given by reference: setting name to reference."""
    return {
        name: str(value["secret_ref"])
        for name, value in secrets.items()
        if isinstance(value, Mapping) and "secret_ref" in value
    }


def allowed_prefixes(prefixes: list[str], project: str) -> list[str]:
    return [prefix.replace("{project}", project) for prefix in prefixes]


def is_allowed(ref: SecretRef, prefixes: list[str], *, follow_links: bool = False) -> bool:
    """Whether ``ref`` lies under one of ``prefixes`` (already for its project). A secret
    given by ARN counts by its name. With ``follow_links`` a file counts by where its path
    leads, so a link in the directory cannot point out of it."""
    for prefix in prefixes:
        if ref.kind == "secretsmanager" and prefix.startswith(_SECRETS_MANAGER):
            if ref.reference.startswith(prefix) or (_SECRETS_MANAGER + ref.secret_name).startswith(
                prefix
            ):
                return True
        elif ref.kind == "file" and prefix.startswith(_FILE):
            if not ref.reference.startswith(prefix):
                continue
            if not follow_links:
                return True
            directory = Path(prefix.removeprefix(_FILE)).resolve()
            if Path(ref.location).resolve().is_relative_to(directory):
                return True
    return False


def check_allowed(secrets: Mapping[str, Any], prefixes: list[str], project: str) -> None:
    """Unprocessable (422) unless every reference in ``secrets`` is one the operator allows
    for ``project``."""
    allowed = allowed_prefixes(prefixes, project)
    for name, reference in sorted(references(secrets).items()):
        if not allowed:
            raise Unprocessable(
                "Secret references are not enabled on this platform: give the secret itself",
                extra={"field": f"config.{name}"},
            )
        if not is_allowed(SecretRef.parse(name, reference), allowed):
            raise Unprocessable(
                "The secret reference is outside the places allowed for this project",
                extra={"field": f"config.{name}", "allowed_prefixes": allowed},
            )


async def resolve(
    secrets: Mapping[str, Any], prefixes: list[str], project: str, *, fresh: bool = False
) -> dict[str, Any]:
    """``secrets`` with each reference replaced by the value it names (``fresh``: past the
    cache). Raises :class:`SendError` naming the setting, never a value, when one is no
    longer allowed or cannot be read."""
    resolved = dict(secrets)
    allowed = allowed_prefixes(prefixes, project)
    for name, reference in references(secrets).items():
        ref = SecretRef.parse(f"the {name} secret reference", reference)
        if not is_allowed(ref, allowed, follow_links=True):
            raise SendError(f"the {name} secret reference is not allowed (any longer)")
        try:
            # boto3 and file reads block: off the event loop.
            resolved[name] = await asyncio.to_thread(ref.read, fresh=fresh)
        except SecretSourceError as exc:
            raise SendError(f"could not read the channel's secret: {exc}") from None
    return resolved
