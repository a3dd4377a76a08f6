"""The production profile refuses hops that leave the machine without TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from armillary.kit.settings import Settings

SECRET = "p" * 48


def production(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "profile": "production",
        "home": tmp_path,
        "secret_key": SECRET,
        "database_url": "postgresql+asyncpg://app@127.0.0.1/armillary",
        "host": "127.0.0.1",
    }
    values.update(overrides)
    return Settings(**values)


def test_loopback_hops_may_be_plaintext(tmp_path: Path) -> None:
    settings = production(
        tmp_path, redis_url="redis://127.0.0.1:6379/0", rabbitmq_url="amqp://g:g@localhost/"
    )
    assert settings.plaintext_hops() == []


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"database_url": "postgresql+asyncpg://app@db.internal/armillary"}, "PostgreSQL"),
        ({"redis_url": "redis://cache.internal:6379/0"}, "Redis"),
        ({"rabbitmq_url": "amqp://u:p@mq.internal/"}, "RabbitMQ"),
        ({"host": "0.0.0.0"}, "HTTP listener"),  # noqa: S104 - the case under test
    ],
)
def test_each_plaintext_hop_off_the_machine_is_refused(
    tmp_path: Path, overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):  # InsecureSettings, in a ValidationError
        production(tmp_path, **overrides)


def test_tls_on_each_hop_is_accepted(tmp_path: Path) -> None:
    settings = production(
        tmp_path,
        database_url="postgresql+asyncpg://app@db.internal/armillary",
        database_sslmode="verify-full",
        redis_url="rediss://cache.internal:6380/0",
        rabbitmq_url="amqps://u:p@mq.internal/",
        host="0.0.0.0",  # noqa: S104 - behind a TLS-terminating proxy
        tls_terminated_by_proxy=True,
    )
    assert settings.plaintext_hops() == []
    # Or the server's own certificate instead of a proxy.
    own = production(tmp_path, host="0.0.0.0", tls_cert_file=tmp_path / "c.pem")  # noqa: S104
    assert own.plaintext_hops() == []
