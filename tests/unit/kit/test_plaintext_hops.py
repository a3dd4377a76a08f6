"""The production profile refuses hops that leave the machine without TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from armillary.gateway.settings import SERVICES as GATEWAY_SERVICES
from armillary.gateway.settings import GatewaySettings
from armillary.kit.settings import SERVICE_PORTS, Settings

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
        # A pooler on this machine, PostgreSQL itself (leader lock, LISTEN) elsewhere.
        (
            {"database_direct_url": "postgresql+asyncpg://app@db.internal/armillary"},
            "PostgreSQL",
        ),
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


@pytest.mark.parametrize("service", sorted(SERVICE_PORTS))
def test_a_plaintext_service_url_off_the_machine_is_refused(tmp_path: Path, service: str) -> None:
    with pytest.raises(
        ValueError, match=f"the {service} service .*ARMILLARY_{service.upper()}_URL"
    ):
        production(tmp_path, **{f"{service}_url": f"http://{service}.internal:8000"})
    # A proxy terminating TLS for this process's clients says nothing of its outgoing calls.
    with pytest.raises(ValueError, match=f"the {service} service"):
        production(
            tmp_path,
            host="0.0.0.0",  # noqa: S104 - behind the proxy
            tls_terminated_by_proxy=True,
            **{f"{service}_url": f"http://{service}.internal:8000"},
        )


def test_a_declared_service_mesh_excuses_plaintext_service_urls_only(tmp_path: Path) -> None:
    remote = {f"{s}_url": f"http://{s}.internal:8000" for s in SERVICE_PORTS}
    meshed = production(tmp_path, tls_service_mesh=True, **remote)
    assert meshed.plaintext_hops() == []
    with pytest.raises(ValueError, match="Redis"):
        production(
            tmp_path, tls_service_mesh=True, redis_url="redis://cache.internal:6379/0", **remote
        )
    upstreams = {f"{s}_url": f"http://{s}.internal:8000" for s in GATEWAY_SERVICES}
    assert gateway(tls_service_mesh=True, **upstreams).plaintext_hops() == []


def test_service_urls_over_https_or_on_loopback_are_accepted(tmp_path: Path) -> None:
    remote = {f"{s}_url": f"https://{s}.internal:8443" for s in SERVICE_PORTS}
    assert production(tmp_path, **remote).plaintext_hops() == []
    local = {f"{s}_url": f"http://localhost:{port}" for s, port in SERVICE_PORTS.items()}
    local["identity_url"] = "http://[::1]:8101"
    assert production(tmp_path, **local).plaintext_hops() == []
    # Unset: the default is 127.0.0.1.
    assert production(tmp_path).plaintext_hops() == []


def gateway(**values: Any) -> GatewaySettings:
    return GatewaySettings.model_validate({"profile": "production", **values})


def test_the_gateway_refuses_plaintext_upstreams_off_the_machine() -> None:
    with pytest.raises(ValueError, match=r"the serving service .*ARMILLARY_SERVING_URL"):
        gateway(serving_url="http://10.0.3.7:8105")
    # Its listener is refused too unless it has a certificate or sits behind a TLS proxy,
    # and that proxy does not excuse a plaintext upstream.
    with pytest.raises(ValueError, match="public listener"):
        gateway(host="0.0.0.0")  # noqa: S104 - the case under test
    with pytest.raises(ValueError, match="the data service"):
        gateway(
            host="0.0.0.0",  # noqa: S104 - behind the proxy
            tls_terminated_by_proxy=True,
            data_url="http://data.internal:8102",
        )


def test_the_gateway_accepts_tls_or_loopback_upstreams(tmp_path: Path) -> None:
    assert gateway().plaintext_hops() == []  # every default upstream is on 127.0.0.1
    tls = gateway(
        host="0.0.0.0",  # noqa: S104 - serves HTTPS itself
        tls_cert_file=tmp_path / "cert.pem",
        **{f"{s}_url": f"https://{s}.internal:8443" for s in GATEWAY_SERVICES},
    )
    assert tls.plaintext_hops() == []
    proxied = gateway(host="0.0.0.0", tls_terminated_by_proxy=True)  # noqa: S104
    assert proxied.plaintext_hops() == []
    # The embedded profile only reports.
    plain = GatewaySettings(serving_url="http://10.0.3.7:8105")
    assert plain.plaintext_hops() == ["the serving service (an https:// ARMILLARY_SERVING_URL)"]
