"""Direct downloads: presigned GET URLs on S3, signed download tokens on the local backend."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, quote, urlsplit
from uuid import uuid4

import httpx
import pytest

from armillary.kit.storage import (
    DownloadTokenExpired,
    InvalidDownloadToken,
    InvalidObjectKey,
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StorageSettings,
    job_artifact_key,
)

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"


def _assert_valid_sigv4(url: str, *, region: str = "us-east-1") -> dict[str, str]:
    """Recompute the SigV4 query signature, since moto serves presigned URLs unchecked."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)
    params = dict(pairs)
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(pairs)
        if k != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    timestamp = params["X-Amz-Date"]
    scope = f"{timestamp[:8]}/{region}/s3/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            timestamp,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    signing_key = ("AWS4" + SECRET_KEY).encode()
    for part in (timestamp[:8], region, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    assert params["X-Amz-Credential"] == f"{ACCESS_KEY}/{scope}"
    assert hmac.compare_digest(expected, params["X-Amz-Signature"]), "bad SigV4 signature"
    return params


async def test_direct_download(store: ObjectStore) -> None:
    key = job_artifact_key(uuid4(), uuid4(), "train", "model.onnx")
    payload = b"onnx-bytes" * 1000
    await store.put_bytes(key, payload)

    url = await store.presigned_get_url(key, timedelta(minutes=5))

    if isinstance(store, S3ObjectStore):
        assert url is not None
        params = _assert_valid_sigv4(url)
        assert params["X-Amz-Expires"] == "300"
        assert urlsplit(url).path.endswith("/" + key)
        assert params["response-content-disposition"] == 'attachment; filename="model.onnx"'
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
        assert response.status_code == 200
        assert response.content == payload
        # A browser following the link saves the file instead of rendering it.
        assert response.headers["content-disposition"] == 'attachment; filename="model.onnx"'
    else:
        assert isinstance(store, LocalObjectStore)
        assert url is None, "the local backend has no URLs; the API serves a signed route"
        token = store.sign_download(key, datetime.now(UTC) + timedelta(minutes=5))
        granted = store.verify_download(token)
        assert granted == key
        assert store.path_of(granted).read_bytes() == payload


async def test_presigned_url_ttl_defaults_and_bounds(store: ObjectStore) -> None:
    key = job_artifact_key(uuid4(), uuid4(), "train", "a.bin")
    with pytest.raises(ValueError, match="ttl"):
        await store.presigned_get_url(key, timedelta(0))
    if isinstance(store, S3ObjectStore):
        default = await store.presigned_get_url(key)
        assert default is not None
        assert _assert_valid_sigv4(default)["X-Amz-Expires"] == "900"
        with pytest.raises(ValueError, match="7 days"):
            await store.presigned_get_url(key, timedelta(days=8))


@pytest.fixture
def key() -> str:
    return job_artifact_key(uuid4(), uuid4(), "evaluate", "report.json")


def _parts(token: str) -> list[str]:
    return token.split(".")


def test_token_round_trip_and_expiry(local_store: LocalObjectStore, key: str) -> None:
    issued = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    token = local_store.sign_download(key, issued + timedelta(minutes=15))

    assert local_store.verify_download(token, now=issued) == key
    assert local_store.verify_download(token, now=issued + timedelta(minutes=14)) == key
    with pytest.raises(DownloadTokenExpired) as caught:
        local_store.verify_download(token, now=issued + timedelta(minutes=15))
    assert caught.value.status == 403


def test_token_expiry_uses_the_real_clock_by_default(
    local_store: LocalObjectStore, key: str
) -> None:
    now = datetime.now(UTC)
    assert local_store.verify_download(local_store.sign_download(key, now + timedelta(minutes=1)))
    with pytest.raises(DownloadTokenExpired):
        local_store.verify_download(local_store.sign_download(key, now - timedelta(seconds=1)))


def test_tampered_tokens_are_refused(local_store: LocalObjectStore, key: str) -> None:
    now = datetime.now(UTC)
    token = local_store.sign_download(key, now + timedelta(minutes=5))
    other = local_store.sign_download(
        job_artifact_key(uuid4(), uuid4(), "train", "secret.bin"), now + timedelta(minutes=5)
    )
    encoded_key, expires, mac = _parts(token)
    flipped = ("A" if mac[0] != "A" else "B") + mac[1:]
    later = str(int(expires) + 3600)

    forged = [
        f"{_parts(other)[0]}.{expires}.{mac}",  # another object's key under this MAC
        f"{encoded_key}.{later}.{mac}",  # a longer life
        f"{encoded_key}.{expires}.{flipped}",  # a different MAC
        f"{encoded_key}.{expires}.{_parts(other)[2]}",  # another token's MAC
    ]
    for candidate in forged:
        with pytest.raises(InvalidDownloadToken) as caught:
            local_store.verify_download(candidate)
        assert not isinstance(caught.value, DownloadTokenExpired)


def test_expired_token_cannot_be_revived(local_store: LocalObjectStore, key: str) -> None:
    past = datetime.now(UTC) - timedelta(hours=1)
    encoded_key, _, mac = _parts(local_store.sign_download(key, past))
    revived = f"{encoded_key}.{int(past.timestamp()) + 7200}.{mac}"
    with pytest.raises(InvalidDownloadToken):
        local_store.verify_download(revived)


def test_tokens_from_another_secret_are_refused(
    local_store: LocalObjectStore, local_settings: StorageSettings, key: str
) -> None:
    assert local_settings.local_root is not None
    stranger = LocalObjectStore(
        local_settings.local_root, local_settings, signing_secret="another-secret-" * 3
    )
    token = stranger.sign_download(key, datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(InvalidDownloadToken):
        local_store.verify_download(token)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b",
        "a.1.b.c",
        "a.1.",
        ".1." + "A" * 43,
        "a.-1." + "A" * 43,
        "a.1e9." + "A" * 43,
        "a.1." + "A" * 42,
        "a.1." + "A" * 42 + "=",
        "a+b.1." + "A" * 43,
        "a/b.1." + "A" * 43,
        "Li4vZXRjL3Bhc3N3ZA.9999999999." + "A" * 43,  # "../etc/passwd"
        "x" * 5000 + ".1." + "A" * 43,
        "a.\u0661." + "A" * 43,
    ],
)
def test_malformed_tokens_are_refused(local_store: LocalObjectStore, token: str) -> None:
    with pytest.raises(InvalidDownloadToken):
        local_store.verify_download(token)


def test_signing_refuses_bad_input(local_store: LocalObjectStore, key: str) -> None:
    with pytest.raises(InvalidObjectKey):
        local_store.sign_download("../etc/passwd", datetime.now(UTC) + timedelta(minutes=5))
    with pytest.raises(ValueError, match="timezone"):
        local_store.sign_download(key, datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="secret"):
        LocalObjectStore(local_store.root, StorageSettings(), signing_secret="short")
