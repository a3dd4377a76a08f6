"""The identity service's long-lived parts, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from fastapi import Request

from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings

from .audit.service import AuditLog, CheckpointFile
from .keys.service import KeyRing
from .passwords import Passwords

SERVICE = "identity"


@dataclass
class Identity:
    settings: Settings
    passwords: Passwords
    keyring: KeyRing
    audit_log: AuditLog
    runtime: Runtime

    @classmethod
    def create(cls, runtime: Runtime) -> Identity:
        settings = runtime.settings
        secret = settings.resolved_secret_key()
        previous = [key.get_secret_value() for key in settings.previous_secret_keys]
        return cls(
            settings=settings,
            passwords=Passwords(settings),
            keyring=KeyRing(
                secret,
                rotation=timedelta(days=settings.signing_key_rotation_days),
                grace=timedelta(seconds=settings.signing_key_grace_seconds),
                publish_lead=timedelta(seconds=settings.signing_key_publish_lead_seconds),
                active_ttl=settings.jwks_cache_ttl_seconds,
                previous=previous,
            ),
            audit_log=AuditLog(
                secret,
                CheckpointFile(settings.home / "audit" / "checkpoint.json"),
                previous=previous,
            ),
            runtime=runtime,
        )


def identity_of(runtime: Runtime) -> Identity:
    component = runtime.services[SERVICE]
    assert isinstance(component, Identity)  # noqa: S101 - wired by identity.app.install
    return component


def current_identity(request: Request) -> Identity:
    return identity_of(request.app.state.runtime)
