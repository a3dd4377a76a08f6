from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from armillary.kit.redaction import REDACTED, redact_mapping
from armillary.kit.settings import Settings

STRONG = "s" * 48


def test_production_refuses_missing_secret() -> None:
    with pytest.raises(ValidationError, match="ARMILLARY_SECRET_KEY is not set"):
        Settings(profile="production", database_url="postgresql+asyncpg://db/x")


@pytest.mark.parametrize("secret", ["changeme", "secret", "short-but-not-default"])
def test_production_refuses_default_or_short_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="default or shorter"):
        Settings(profile="production", secret_key=secret, database_url="postgresql+asyncpg://db/x")


def test_production_refuses_missing_database_and_weak_admin_password() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(profile="production", secret_key=STRONG, admin_password="admin")
    message = str(info.value)
    assert "ARMILLARY_DATABASE_URL is not set" in message
    assert "ARMILLARY_ADMIN_PASSWORD" in message


def test_production_accepts_strong_configuration() -> None:
    settings = Settings(
        profile="production",
        secret_key=STRONG,
        database_url="postgresql+asyncpg://db/x",
        database_sslmode="verify-full",  # a database on another host is reached over TLS
    )
    assert settings.database_dsn == "postgresql+asyncpg://db/x"


def test_embedded_generates_and_keeps_a_secret(tmp_path: Path) -> None:
    first = Settings(home=tmp_path).resolved_secret_key()
    again = Settings(home=tmp_path).resolved_secret_key()
    assert first == again
    assert len(first) >= 48
    assert (tmp_path / "secret.key").stat().st_mode & 0o077 == 0


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ARMILLARY_HOME", str(tmp_path))
    monkeypatch.setenv("ARMILLARY_PORT", "8123")
    monkeypatch.setenv("ARMILLARY_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    settings = Settings()
    assert settings.port == 8123
    assert settings.database_dsn.endswith(f"{tmp_path}/armillary.db")
    assert [str(n) for n in settings.trusted_proxy_networks] == ["10.0.0.0/8", "127.0.0.1/32"]


def test_redaction_masks_secret_keys_and_token_values() -> None:
    token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjM0NSJ9.c2lnbmF0dXJlLWJ5dGVz"
    data = {
        "password": "hunter2",
        "refresh_token": "abc",
        "Authorization": "Bearer xyz",
        "note": f"header was Bearer {token}",
        "nested": {"api_key": "k", "list": [f"jwt {token}", 3]},
        "email": "ada@example.com",
    }
    out = redact_mapping(data)
    assert out["password"] == REDACTED
    assert out["refresh_token"] == REDACTED
    assert out["Authorization"] == REDACTED
    assert token not in str(out)
    assert out["nested"]["api_key"] == REDACTED
    assert out["nested"]["list"][1] == 3
    assert out["email"] == "ada@example.com"


def test_the_rabbitmq_event_transport_needs_a_broker_url() -> None:
    with pytest.raises(ValidationError, match="ARMILLARY_EVENT_TRANSPORT=rabbitmq needs"):
        Settings(event_transport="rabbitmq")
    chosen = Settings(event_transport="rabbitmq", rabbitmq_url="amqp://guest:guest@mq:5672/")
    assert chosen.event_transport == "rabbitmq"
    assert Settings().event_transport == "in_process"  # the embedded shape keeps its bus


def test_retry_delays_come_from_a_json_list_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ARMILLARY_EVENT_RETRY_DELAYS_SECONDS", "[0.5, 2]")
    assert Settings().event_retry_delays_seconds == [0.5, 2.0]
    with pytest.raises(ValidationError, match="must all be positive"):
        Settings(event_retry_delays_seconds=[1, 0])
