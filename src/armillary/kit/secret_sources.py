"""Where secret settings come from: a secret manager or a file, the environment only in
development.

Every secret setting ``X`` of a settings class (its ``SECRET_FIELDS``) can be given as

- ``ARMILLARY_X_SECRET_ID``: an AWS Secrets Manager secret, by name or ARN; ``#key`` picks one
  key of a JSON secret (``...:secret:rds-db#password``). The endpoint is boto3's own
  (``AWS_ENDPOINT_URL_SECRETS_MANAGER`` reaches a local server);
- ``ARMILLARY_X_FILE``: a file's content (a Kubernetes secret volume), trailing newline removed;
- ``ARMILLARY_X``: the environment, which the production profile warns about.

Only one of them may be set. Values read from Secrets Manager (its ``AWSCURRENT`` stage) are
cached for ``ARMILLARY_SECRETS_CACHE_TTL_SECONDS`` (300 by default); :class:`SecretRef`
re-reads one on demand, so the database password is picked up again when PostgreSQL refuses
the old one. :meth:`SecretRef.parse` reads a reference written as one string
(``aws-secretsmanager:NAME_OR_ARN[#key]`` or ``file:/path``), as alert channels take them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

SECRET_ID_SUFFIX = "_SECRET_ID"  # noqa: S105 - a variable name suffix, not a secret
FILE_SUFFIX = "_FILE"


class SecretSourceError(ValueError):
    """A secret could not be read from where the configuration says it is. The message
    names the setting and the source, never the value."""


def _cache_ttl() -> float:
    return float(os.environ.get("ARMILLARY_SECRETS_CACHE_TTL_SECONDS", "300"))


class _SecretsManager:
    """Reads secrets through boto3, each cached for the TTL (one client per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: Any = None
        self._cache: dict[str, tuple[float, str]] = {}
        # What the TTL is measured with (tests move it forward instead of sleeping).
        self.clock: Callable[[], float] = time.monotonic

    def read(self, secret_id: str, *, fresh: bool = False) -> str:
        with self._lock:
            cached = self._cache.get(secret_id)
            if cached is not None and not fresh and self.clock() - cached[0] < _cache_ttl():
                return cached[1]
            value = self._fetch(secret_id)
            self._cache[secret_id] = (self.clock(), value)
            return value

    def _fetch(self, secret_id: str) -> str:
        import boto3  # only processes configured with a secret manager pay for the import
        from botocore.exceptions import BotoCoreError, ClientError

        if self._client is None:
            self._client = boto3.client("secretsmanager")
        try:
            # AWSCURRENT by name: a rotation's AWSPENDING value may not be in use yet, and the
            # label (not a default version) is what its finishSecret step moves.
            answer = self._client.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise SecretSourceError(f"Secrets Manager refused {secret_id!r}: {code}") from None
        except BotoCoreError as exc:
            raise SecretSourceError(
                f"Secrets Manager could not be reached for {secret_id!r}: {type(exc).__name__}"
            ) from None
        if "SecretString" not in answer:
            raise SecretSourceError(f"{secret_id!r} holds binary data, not a string")
        return str(answer["SecretString"])

    def forget(self) -> None:
        """Drop cached values and the client (tests; a changed endpoint or credentials)."""
        with self._lock:
            self._cache.clear()
            self._client = None


SECRETS_MANAGER = _SecretsManager()


#: How a secret reference is written as one string (alert channels take these), by kind.
REFERENCE_SCHEMES = {"secretsmanager": "aws-secretsmanager:", "file": "file:"}
REFERENCE_FORMS = "aws-secretsmanager:NAME_OR_ARN[#key] or file:/absolute/path"


@dataclass(frozen=True)
class SecretRef:
    """Where one secret setting's value lives; :meth:`read` fetches it (again)."""

    setting: str
    kind: str  # "secretsmanager" or "file"
    location: str

    @classmethod
    def parse(cls, setting: str, reference: str) -> SecretRef:
        """A reference written as one string (:data:`REFERENCE_FORMS`). ValueError, naming
        the accepted forms, for anything else; a file's path must be absolute and normal (no
        ``..``, no ``//``), so that where it points can be checked by its text."""
        for kind, scheme in REFERENCE_SCHEMES.items():
            if not reference.startswith(scheme):
                continue
            location = reference.removeprefix(scheme)
            name, _, key = location.partition("#")
            if any(c.isspace() or ord(c) < 32 for c in location) or not name:
                break
            if "#" in location and not key:
                break
            if kind == "file" and (
                "#" in location
                or not name.startswith("/")
                or os.path.normpath(name) != name.rstrip("/")
            ):
                break
            return cls(setting, kind, location)
        raise ValueError(f"a secret reference is written {REFERENCE_FORMS}")

    @property
    def reference(self) -> str:
        """The reference as one string, as :meth:`parse` reads it."""
        return REFERENCE_SCHEMES[self.kind] + self.location

    @property
    def secret_name(self) -> str:
        """Secrets Manager: the secret's name, also when given by ARN (then with the six
        random characters AWS appends to it); a file: its path."""
        name = self.location.partition("#")[0]
        if self.kind == "secretsmanager" and name.startswith("arn:"):
            return name.partition(":secret:")[2] or name
        return name

    def read(self, *, fresh: bool = False) -> str:
        if self.kind == "file":
            try:
                return Path(self.location).read_text().rstrip("\r\n")
            except OSError as exc:
                raise SecretSourceError(
                    f"{self.setting}: the file it names cannot be read ({exc.strerror})"
                ) from None
        secret_id, _, key = self.location.partition("#")
        raw = SECRETS_MANAGER.read(secret_id, fresh=fresh)
        if not key:
            return raw
        try:
            value = json.loads(raw)[key]
        except (ValueError, KeyError, TypeError):
            raise SecretSourceError(
                f"{self.setting}: secret {secret_id!r} is not JSON with a {key!r} key"
            ) from None
        return str(value)


def secret_ref(prefix: str, field: str, environ: dict[str, str] | None = None) -> SecretRef | None:
    """Where ``field`` comes from, when a secret manager or a file provides it."""
    env = os.environ if environ is None else environ
    name = f"{prefix}{field}".upper()
    secret_id, path = env.get(name + SECRET_ID_SUFFIX), env.get(name + FILE_SUFFIX)
    given = [n for n in (name, name + SECRET_ID_SUFFIX, name + FILE_SUFFIX) if env.get(n)]
    if len(given) > 1:
        raise SecretSourceError(f"Set only one of {', '.join(given)}")
    if secret_id:
        return SecretRef(name, "secretsmanager", secret_id)
    if path:
        return SecretRef(name, "file", path)
    return None


def plain_environment_secrets(
    settings_cls: type[BaseSettings], fields: frozenset[str]
) -> list[str]:
    """The secret settings given as plain environment variables (the production profile
    warns about each)."""
    prefix = str(settings_cls.model_config.get("env_prefix", ""))
    return sorted(f"{prefix}{f}".upper() for f in fields if os.environ.get(f"{prefix}{f}".upper()))


class SecretSettingsSource(PydanticBaseSettingsSource):
    """Pydantic settings source for ``*_SECRET_ID`` and ``*_FILE`` of the secret fields."""

    def __init__(self, settings_cls: type[BaseSettings], fields: frozenset[str]) -> None:
        super().__init__(settings_cls)
        self._fields = fields
        self._prefix = str(settings_cls.model_config.get("env_prefix", ""))

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name not in self._fields:
            return None, field_name, False
        ref = secret_ref(self._prefix, field_name)
        if ref is None:
            return None, field_name, False
        value = ref.read()
        # A list setting (previous keys) is a JSON list in its secret, as in the environment.
        complex_ = self.field_is_complex(field)
        return (json.loads(value) if complex_ else value), field_name, complex_

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class SecretSourcedSettings(BaseSettings):
    """Base of settings classes with secrets: ``SECRET_FIELDS`` may come from a secret
    manager or a file (after constructor arguments, before the environment)."""

    SECRET_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            SecretSettingsSource(settings_cls, cls.SECRET_FIELDS),
            env_settings,
            dotenv_settings,
            file_secret_settings,
        )

    @classmethod
    def secret_ref(cls, field: str) -> SecretRef | None:
        return secret_ref(str(cls.model_config.get("env_prefix", "")), field)

    @classmethod
    def plain_environment_secrets(cls) -> list[str]:
        """The secret settings given as plain environment variables (the production profile
        warns about each: a secret manager or a file keeps them out of the process listing
        and the orchestrator's configuration)."""
        return plain_environment_secrets(cls, cls.SECRET_FIELDS)
