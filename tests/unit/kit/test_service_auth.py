"""Service credentials (ADR 0021): issued short-lived for one audience, verified against the
caller's own key, refused for another audience, and allowed only where the policy says."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from armillary.kit.errors import Forbidden, Unauthorized
from armillary.kit.service_auth import (
    MAX_TTL_SECONDS,
    ServiceCredentials,
    ServiceVerifier,
    key_id,
    load_private_key,
    load_public_keys,
    service_id,
    write_key_pair,
)
from armillary.kit.service_client import ServiceClient

JOB_TOKENS = ("POST", "/internal/v1/job-tokens")
RESOLVE = ("GET", "/internal/v1/model-versions/resolve")
POLICY = {JOB_TOKENS: frozenset({"workflows"}), RESOLVE: frozenset({"serving"})}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys() -> dict[str, Ed25519PrivateKey]:
    return {name: Ed25519PrivateKey.generate() for name in ("workflows", "serving")}


def _verifier(service: str, keys: dict[str, Ed25519PrivateKey]) -> ServiceVerifier:
    public = {name: [key.public_key()] for name, key in keys.items()}
    return ServiceVerifier(service, public, POLICY)


def test_a_credential_is_reused_then_renewed_before_it_expires(
    keys: dict[str, Ed25519PrivateKey],
) -> None:
    clock = Clock()
    credentials = ServiceCredentials("serving", keys["serving"], clock=clock)
    first = credentials.token_for("registry")
    assert credentials.token_for("registry") == first
    assert credentials.token_for("identity") != first
    claims = jwt.decode(first, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] <= MAX_TTL_SECONDS
    assert claims["aud"] == service_id("registry")
    clock.now += MAX_TTL_SECONDS - 10  # within the renewal window
    assert credentials.token_for("registry") != first
    with pytest.raises(ValueError):
        ServiceCredentials("serving", keys["serving"], ttl_seconds=3600)


def test_the_receiver_knows_the_caller_and_applies_its_policy(
    keys: dict[str, Ed25519PrivateKey],
) -> None:
    identity = _verifier("identity", keys)
    token = ServiceCredentials("workflows", keys["workflows"]).token_for("identity")
    assert identity.verify(token) == "workflows"
    identity.authorize("workflows", *JOB_TOKENS)
    serving = ServiceCredentials("serving", keys["serving"]).token_for("identity")
    assert identity.verify(serving) == "serving"
    with pytest.raises(Forbidden):  # serving never mints job tokens
        identity.authorize("serving", *JOB_TOKENS)
    with pytest.raises(Forbidden):  # a route nobody is listed for
        identity.authorize("workflows", "GET", "/internal/v1/other")


def test_a_credential_for_another_audience_is_refused(
    keys: dict[str, Ed25519PrivateKey],
) -> None:
    for_registry = ServiceCredentials("serving", keys["serving"]).token_for("registry")
    assert _verifier("registry", keys).verify(for_registry) == "serving"
    with pytest.raises(Forbidden):
        _verifier("identity", keys).verify(for_registry)


def test_forged_expired_and_foreign_tokens_are_not_credentials(
    keys: dict[str, Ed25519PrivateKey],
) -> None:
    identity = _verifier("identity", keys)
    # Signed by a key that is not workflows' own, claiming to be workflows.
    impostor = ServiceCredentials("workflows", Ed25519PrivateKey.generate())
    with pytest.raises(Unauthorized):
        identity.verify(impostor.token_for("identity"))
    clock = Clock()
    clock.now -= 3600
    expired = ServiceCredentials("workflows", keys["workflows"], clock=clock)
    with pytest.raises(Unauthorized, match="expired"):
        identity.verify(expired.token_for("identity"))
    now = int(time.time())
    kid = key_id(keys["workflows"].public_key())
    claims = {
        "iss": service_id("workflows"),
        "sub": "workflows",
        "aud": service_id("identity"),
        "iat": now,
        "exp": now + 3600,
        "jti": "x",
    }
    long_lived = jwt.encode(
        claims, keys["workflows"], algorithm="EdDSA", headers={"kid": kid, "typ": "service+jwt"}
    )
    with pytest.raises(Unauthorized):
        identity.verify(long_lived)
    # The same claims as a user's access token type: not a service credential.
    access_typed = jwt.encode(
        {**claims, "exp": now + 30},
        keys["workflows"],
        algorithm="EdDSA",
        headers={"kid": kid, "typ": "at+jwt"},
    )
    with pytest.raises(Unauthorized):
        identity.verify(access_typed)
    for junk in ("", "not-a-jwt", "ak_live_0123456789abcdef"):
        with pytest.raises(Unauthorized):
            identity.verify(junk)


async def test_the_client_sends_its_credential_to_internal_routes_only(
    keys: dict[str, Ed25519PrivateKey],
) -> None:
    seen: dict[str, str | None] = {}

    def upstream(request: httpx.Request) -> httpx.Response:
        seen[request.url.path] = request.headers.get("authorization")
        return httpx.Response(200, json={})

    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream), base_url="http://up")
    credentials = ServiceCredentials("serving", keys["serving"])
    client = ServiceClient("registry", http, credentials=credentials)
    await client.send("GET", "/internal/v1/model-versions/resolve")
    await client.send("GET", "/api/v1/projects/p/models")
    await client.send("GET", "/api/v1/projects/p/models/m", token="user-token")
    sent = seen["/internal/v1/model-versions/resolve"]
    assert sent is not None
    assert _verifier("registry", keys).verify(sent.removeprefix("Bearer ")) == "serving"
    assert seen["/api/v1/projects/p/models"] is None
    assert seen["/api/v1/projects/p/models/m"] == "Bearer user-token"


def test_key_files_are_private_and_never_silently_replaced(tmp_path: Path) -> None:
    private, public = write_key_pair(tmp_path, "serving")
    assert private.stat().st_mode & 0o777 == 0o600
    key = load_private_key(private.read_bytes())
    (loaded,) = load_public_keys(public.read_bytes())
    assert key_id(loaded) == key_id(key.public_key())
    with pytest.raises(FileExistsError):
        write_key_pair(tmp_path, "serving")
    old_public = public.read_bytes()
    write_key_pair(tmp_path, "serving", overwrite=True)
    new_key = load_private_key(private.read_bytes())
    assert key_id(new_key.public_key()) != key_id(key.public_key())
    # A rotation: the old and the new public key side by side, both verify.
    both = load_public_keys(old_public + public.read_bytes())
    verifier = ServiceVerifier("registry", {"serving": both}, POLICY)
    for signer in (key, new_key):
        token = ServiceCredentials("serving", signer).token_for("registry")
        assert verifier.verify(token) == "serving"


def test_the_cli_creates_a_key_pair(tmp_path: Path) -> None:
    from armillary.cli.main import app

    result = CliRunner().invoke(app, ["service-keys", "create", "registry", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "registry.key").is_file()
    assert (tmp_path / "registry.pub").is_file()
    again = CliRunner().invoke(app, ["service-keys", "create", "registry", "--dir", str(tmp_path)])
    assert again.exit_code == 1
