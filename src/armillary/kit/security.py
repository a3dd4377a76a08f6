"""Access-token verification against the identity service's published keys (JWKS).

Every service verifies tokens locally: the algorithm is pinned, ``kid`` is checked before any
lookup, and issuer, audience, type and expiry are required.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from jwt.algorithms import OKPAlgorithm

from armillary.contracts.identity import JWKS
from armillary.kit.errors import Unauthorized

ALGORITHM = "EdDSA"
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - JWT "typ" values, not secrets
REFRESH_TOKEN_TYPE = "refresh+jwt"  # noqa: S105
# A personal access token (ADR 0040): a user's rights in one project, for notebooks and CI.
PERSONAL_TOKEN_TYPE = "pat+jwt"  # noqa: S105
PERSONAL_TOKEN_SCOPE = "pat"  # noqa: S105 - the "scope" claim of a personal access token
# The types a bearer credential may have: the same routes accept both, and kit.authz caps a
# personal access token to its project.
BEARER_TOKEN_TYPES = frozenset({ACCESS_TOKEN_TYPE, PERSONAL_TOKEN_TYPE})
_KID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_REQUIRED_CLAIMS = ["exp", "iat", "sub", "jti", "iss", "aud"]

JWKSFetcher = Callable[[], Awaitable[JWKS]]


class InvalidToken(Unauthorized):
    title = "Not authenticated"


class KeySet:
    """Public keys by ``kid``, refetched on expiry, on an unknown kid (at most every few
    seconds, so junk kids cannot hammer the identity service), or on a rotation event."""

    def __init__(self, fetch: JWKSFetcher, *, ttl: float = 300, min_refresh_interval: float = 5):
        self._fetch = fetch
        self._ttl = ttl
        self._min_refresh = min_refresh_interval
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        # Bumped whenever keys may have been retired: verified-token caches must start over.
        self.generation = 0

    def invalidate(self) -> None:
        self._fetched_at = 0.0
        self._keys = {}
        self.generation += 1

    async def refresh_if_stale(self) -> None:
        """Refetch once the TTL is up, even for callers that need no key right now: a
        verified-token cache must learn of keys retired elsewhere."""
        if self._fetched_at and time.monotonic() - self._fetched_at > self._ttl:
            await self._refresh()

    async def get(self, kid: str) -> Any | None:
        now = time.monotonic()
        expired = now - self._fetched_at > self._ttl
        unknown = kid not in self._keys and now - self._fetched_at > self._min_refresh
        if expired or unknown:
            await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        jwks = await self._fetch()
        keys = {}
        for jwk in jwks.keys:
            if jwk.get("alg") == ALGORITHM and jwk.get("kty") == "OKP" and "kid" in jwk:
                keys[jwk["kid"]] = OKPAlgorithm.from_jwk(jwk)
        if self._keys.keys() - keys.keys():
            # A key was retired elsewhere (its event may never have reached this process):
            # tokens verified with it must be checked again, and now fail.
            self.generation += 1
        self._keys = keys
        self._fetched_at = time.monotonic()


class TokenVerifier:
    """Verifies tokens; remembers recently verified access tokens until they expire, so a
    client's repeated requests skip the signature check (forgotten when keys change)."""

    def __init__(self, keys: KeySet, *, issuer: str, audience: str, cache_size: int = 4096) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self._cache_size = cache_size
        self._verified: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._generation = keys.generation

    async def verify(self, token: str, *, expected_type: str = ACCESS_TOKEN_TYPE) -> dict[str, Any]:
        """Claims of a valid token of ``expected_type``; :class:`InvalidToken` otherwise.
        ``ACCESS_TOKEN_TYPE`` (the default) stands for any bearer credential: an access token
        or a personal access token. The reason stays in the server's logs, never in the
        response."""
        if expected_type != ACCESS_TOKEN_TYPE:
            return await self._verify(token, expected_type)
        await self.keys.refresh_if_stale()
        if self._generation != self.keys.generation:
            self._verified.clear()
            self._generation = self.keys.generation
        claims = self._verified.get(token)
        if claims is not None and claims["exp"] > time.time():
            self._verified.move_to_end(token)
            return claims
        claims = await self._verify(token, expected_type)
        self._verified[token] = claims
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return claims

    async def _verify(self, token: str, expected_type: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("Invalid token") from exc
        kid = header.get("kid")
        typ = header.get("typ")
        accepted = BEARER_TOKEN_TYPES if expected_type == ACCESS_TOKEN_TYPE else {expected_type}
        if (
            header.get("alg") != ALGORITHM
            or typ not in accepted
            or not isinstance(kid, str)
            or not _KID.match(kid)
        ):
            raise InvalidToken("Invalid token")
        key = await self.keys.get(kid)
        if key is None:
            raise InvalidToken("Invalid token")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("Token expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("Invalid token") from exc
        # The type and the scope claim must agree: a personal access token is always scoped
        # as one, and no other token may claim to be one.
        if (typ == PERSONAL_TOKEN_TYPE) != (claims.get("scope") == PERSONAL_TOKEN_SCOPE):
            raise InvalidToken("Invalid token")
        return claims


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
