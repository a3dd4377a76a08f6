"""Service credentials (ADR 0021): how one service proves to another who is calling.

Each service holds an Ed25519 key of its own (a PEM file from the secret store, never derived
from the platform secret). A caller signs a short-lived JWT for one audience (the service it
calls); the receiver checks the signature against the caller's public key, the audience (its
own name), the expiry and the type, then an explicit table of which caller may call which
internal route. User tokens, job tokens and API keys are never service credentials: they have
another ``typ``, issuer and audience, and no service key signs them.

In the embedded shape the internal routes are called in process and never served: no
credential is needed there.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from starlette.types import ASGIApp, Receive, Scope, Send

from armillary.kit.errors import Forbidden, Unauthorized
from armillary.kit.security import bearer_token

log = structlog.get_logger("armillary.service_auth")

ALGORITHM = "EdDSA"
SERVICE_TOKEN_TYPE = "service+jwt"  # noqa: S105 - a JWT "typ" value, not a secret
# A stolen credential is worth one minute to one audience.
MAX_TTL_SECONDS = 60
_ISSUER_PREFIX = "armillary-service:"
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "sub", "aud", "jti"]
INTERNAL_PREFIX = "/internal"

# Which caller may call which internal route: (method, path) -> calling services.
Policy = Mapping[tuple[str, str], frozenset[str]]


def service_id(service: str) -> str:
    """The issuer of ``service``'s credentials and the audience of credentials meant for it
    (never the audience of a user's access token)."""
    return f"{_ISSUER_PREFIX}{service}"


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).decode()[:22]


def generate_key_pair() -> tuple[bytes, bytes]:
    """A new key: (private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def write_key_pair(directory: Path, service: str, *, overwrite: bool = False) -> tuple[Path, Path]:
    """``<service>.key`` (mode 0600) and ``<service>.pub`` in ``directory``; refuses to replace
    an existing key unless ``overwrite``."""
    directory.mkdir(parents=True, exist_ok=True)
    private_path, public_path = directory / f"{service}.key", directory / f"{service}.pub"
    if private_path.exists() and not overwrite:
        raise FileExistsError(f"{private_path} exists")
    private_pem, public_pem = generate_key_pair()
    # Created 0600 before anything is written: the key is never readable by others.
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private_pem)
    public_path.write_bytes(public_pem)
    return private_path, public_path


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("a service key must be an Ed25519 private key")
    return key


def load_public_keys(pem: bytes) -> list[Ed25519PublicKey]:
    """Every public key in ``pem`` (several during a rotation: old and new)."""
    keys = []
    for block in pem.split(b"-----END PUBLIC KEY-----"):
        if b"-----BEGIN PUBLIC KEY-----" not in block:
            continue
        key = serialization.load_pem_public_key(block + b"-----END PUBLIC KEY-----\n")
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("a service's public key must be an Ed25519 key")
        keys.append(key)
    return keys


class ServiceCredentials:
    """Signs this service's credentials: one per audience, kept and reused until shortly
    before it expires."""

    def __init__(
        self,
        service: str,
        private_key: Ed25519PrivateKey,
        *,
        ttl_seconds: int = MAX_TTL_SECONDS,
        renew_before_seconds: int = 15,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS or renew_before_seconds >= ttl_seconds:
            raise ValueError(f"ttl_seconds must be within 1..{MAX_TTL_SECONDS}")
        self.service = service
        self._key = private_key
        self._kid = key_id(private_key.public_key())
        self._ttl = ttl_seconds
        self._renew_before = renew_before_seconds
        self._clock = clock
        self._issued: dict[str, tuple[str, float]] = {}

    @classmethod
    def from_pem(cls, service: str, pem: bytes) -> ServiceCredentials:
        return cls(service, load_private_key(pem))

    def token_for(self, audience: str) -> str:
        """A credential of this service for service ``audience``."""
        now = self._clock()
        cached = self._issued.get(audience)
        if cached is not None and cached[1] - self._renew_before > now:
            return cached[0]
        issued_at = int(now)
        expires = issued_at + self._ttl
        claims = {
            "iss": service_id(self.service),
            "sub": self.service,
            "aud": service_id(audience),
            "iat": issued_at,
            "exp": expires,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self._kid, "typ": SERVICE_TOKEN_TYPE}
        token = jwt.encode(claims, self._key, algorithm=ALGORITHM, headers=headers)
        self._issued[audience] = (token, float(expires))
        return token


class ServiceVerifier:
    """Checks credentials sent to service ``service`` and what their caller may call."""

    def __init__(
        self,
        service: str,
        public_keys: Mapping[str, list[Ed25519PublicKey]],
        policy: Policy,
        *,
        leeway_seconds: int = 5,
    ) -> None:
        self.service = service
        self.policy = policy
        self._keys = {
            caller: {key_id(key): key for key in keys} for caller, keys in public_keys.items()
        }
        self._leeway = leeway_seconds

    @classmethod
    def from_directory(
        cls, service: str, directory: Path, policy: Policy, services: Iterable[str]
    ) -> ServiceVerifier:
        """The public keys of ``services`` from ``<service>.pub`` files: a known caller off
        the policy is told 403, an unknown one 401. A caller the policy names without a key
        is refused (and logged), never let through."""
        keys: dict[str, list[Ed25519PublicKey]] = {}
        for caller in sorted(services):
            path = directory / f"{caller}.pub"
            if path.is_file():
                keys[caller] = load_public_keys(path.read_bytes())
        named = set().union(*policy.values()) if policy else set()
        for caller in sorted(named - keys.keys()):
            log.warning("service_key.public_key_missing", caller=caller, directory=str(directory))
        return cls(service, keys, policy)

    def verify(self, token: str) -> str:
        """The calling service; :class:`Unauthorized` unless ``token`` is a valid service
        credential, :class:`Forbidden` when it is one meant for another service."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthorized("A service credential is required") from exc
        issuer = unverified.get("iss")
        kid = header.get("kid")
        if (
            header.get("alg") != ALGORITHM
            or header.get("typ") != SERVICE_TOKEN_TYPE
            or not isinstance(kid, str)
            or not isinstance(issuer, str)
            or not issuer.startswith(_ISSUER_PREFIX)
        ):
            raise Unauthorized("A service credential is required")
        caller = issuer.removeprefix(_ISSUER_PREFIX)
        key = self._keys.get(caller, {}).get(kid)
        if key is None:
            raise Unauthorized("Unknown service key")
        claims = self._decode(token, key, issuer)
        if claims["sub"] != caller or claims["exp"] - claims["iat"] > MAX_TTL_SECONDS:
            raise Unauthorized("Invalid service credential")
        if claims["aud"] != service_id(self.service):
            # A genuine credential, for another service: the caller is known, the call is not.
            raise Forbidden("This credential is for another service")
        return caller

    def _decode(self, token: str, key: Ed25519PublicKey, issuer: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS, "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("Service credential expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("Invalid service credential") from exc
        return claims

    def authorize(self, caller: str, method: str, path: str) -> None:
        """:class:`Forbidden` unless the policy lets ``caller`` call ``method path``."""
        if caller not in self.policy.get((method.upper(), path), frozenset()):
            log.warning("service_call.refused", caller=caller, method=method, path=path)
            raise Forbidden("This service may not call this route")


def is_internal(path: str) -> bool:
    return path == INTERNAL_PREFIX or path.startswith(INTERNAL_PREFIX + "/")


class ServiceCallGuard:
    """ASGI middleware of a served service: every ``/internal`` request needs a service
    credential its policy accepts, before routing or body parsing. The caller's name is left
    in ``scope["state"]["service_caller"]``."""

    def __init__(self, app: ASGIApp, verifier: ServiceVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_internal(scope["path"]):
            token = None
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    token = bearer_token(value.decode("latin-1"))
                    break
            if token is None:
                raise Unauthorized("A service credential is required")
            caller = self.verifier.verify(token)
            self.verifier.authorize(caller, scope["method"], scope["path"])
            scope.setdefault("state", {})["service_caller"] = caller
        await self.app(scope, receive, send)
