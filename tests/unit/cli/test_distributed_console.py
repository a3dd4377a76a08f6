"""`armillary up --distributed` runs the web console as a process of its own, calling the API
through the gateway (issue 19), and `armillary serve console` refuses to start without it."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.conftest import make_settings
from typer.testing import CliRunner

from armillary.cli import distributed
from armillary.cli.main import app
from armillary.console.process import ApiUrlMissing, create_console_app, process_settings
from armillary.console.settings import ConsoleSettings
from armillary.kit.settings import CONSOLE_PORT, SERVICE_PORTS, InsecureSettings


def _console(children: list[distributed.Child]) -> distributed.Child:
    (console,) = [c for c in children if c.name == "console"]
    return console


@pytest.mark.parametrize(
    ("bind", "reachable"),
    [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1")],  # noqa: S104
)
def test_the_console_calls_the_api_through_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bind: str, reachable: str
) -> None:
    monkeypatch.delenv("ARMILLARY_CONSOLE_URL", raising=False)
    settings = make_settings(tmp_path / "home")
    console = _console(distributed.children(settings, bind, 8443, workers=1))
    assert console.env["ARMILLARY_CONSOLE_API_URL"] == f"http://{reachable}:8443"
    assert console.argv[-6:] == [
        "serve",
        "console",
        "--host",
        "127.0.0.1",
        "--port",
        str(CONSOLE_PORT),
    ]
    # It has no database of its own, and never the admin's first password.
    assert "ARMILLARY_ADMIN_PASSWORD" not in console.env


def test_the_console_port_follows_the_gateway_s_console_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARMILLARY_CONSOLE_URL", "http://127.0.0.1:18107")
    settings = make_settings(tmp_path / "home")
    console = _console(distributed.children(settings, "127.0.0.1", 8000, workers=1))
    assert console.argv[-1] == "18107"


def test_the_console_is_no_service() -> None:
    # No schema, database role, service key or internal routes: not among the services.
    assert "console" not in SERVICE_PORTS
    assert CONSOLE_PORT not in SERVICE_PORTS.values()


def test_serve_console_needs_the_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ARMILLARY_CONSOLE_API_URL", raising=False)
    with pytest.raises(ApiUrlMissing):
        create_console_app(console_settings=ConsoleSettings())
    result = CliRunner().invoke(app, ["serve", "console", "--port", "1"])
    assert result.exit_code == 1
    assert "ARMILLARY_CONSOLE_API_URL" in result.output


def test_service_keys_are_not_made_for_the_console() -> None:
    result = CliRunner().invoke(app, ["service-keys", "create", "console"])
    assert result.exit_code == 2


def test_the_console_needs_no_secret_but_refuses_plaintext_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The console holds no secret key and no database: the production profile does not ask
    for them. It does refuse to send users' tokens in plaintext off the machine."""
    for name in ("ARMILLARY_SECRET_KEY", "ARMILLARY_DATABASE_URL", "ARMILLARY_TLS_SERVICE_MESH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARMILLARY_PROFILE", "production")
    monkeypatch.setenv("ARMILLARY_HOST", "0.0.0.0")  # noqa: S104
    monkeypatch.setenv("ARMILLARY_TLS_TERMINATED_BY_PROXY", "true")
    monkeypatch.setenv("ARMILLARY_CONSOLE_API_URL", "https://gateway.internal:8443")
    assert process_settings().secret_key is None
    monkeypatch.setenv("ARMILLARY_CONSOLE_API_URL", "http://gateway.internal:80")
    with pytest.raises(InsecureSettings, match="ARMILLARY_CONSOLE_API_URL"):
        process_settings()
    result = CliRunner().invoke(app, ["serve", "console"])
    assert result.exit_code == 1
    assert "plaintext" in result.output
    # Behind a mesh's mTLS the same URL is accepted, as for the services.
    monkeypatch.setenv("ARMILLARY_TLS_SERVICE_MESH", "true")
    assert process_settings().tls_service_mesh
    monkeypatch.setenv("ARMILLARY_TLS_TERMINATED_BY_PROXY", "false")
    with pytest.raises(InsecureSettings, match="listener"):
        process_settings()
