"""``armillary serve <service>`` (one service per process, the distributed shape) and
``armillary service-keys`` (each service's own key for service credentials, ADR 0021)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from armillary.cli.output import OutputFormat, OutputOption, print_data, terminal

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from armillary.kit.settings import Settings

keys_app = typer.Typer(help="Service keys: how services prove who calls.", no_args_is_help=True)
console = terminal()
err = terminal(stderr=True)


class Service(StrEnum):
    identity = "identity"
    data = "data"
    workflows = "workflows"
    registry = "registry"
    serving = "serving"
    tracking = "tracking"


class Servable(StrEnum):
    """What ``serve`` can serve: a service, or the web console (which has no key)."""

    identity = "identity"
    data = "data"
    workflows = "workflows"
    registry = "registry"
    serving = "serving"
    tracking = "tracking"
    console = "console"


def serve(
    service: Annotated[Servable, typer.Argument(help="The service this process serves")],
    host: Annotated[str | None, typer.Option(help="Bind address [ARMILLARY_HOST]")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port (default: 8101-8106 by service, console 8107)")
    ] = None,
) -> None:
    """Serve one service: its public routes and its /internal routes (service credentials
    only). The other services are reached at ARMILLARY_<SERVICE>_URL. Migrations are not
    applied here: run `armillary db upgrade` first. Any number of copies may run.
    `serve console` serves the web console, which calls the API at
    ARMILLARY_CONSOLE_API_URL (the gateway)."""
    import uvicorn

    from armillary.console.process import ApiUrlMissing, process_settings
    from armillary.kit.logging import configure_logging
    from armillary.kit.settings import CONSOLE_PORT, SERVICE_PORTS, InsecureSettings, Settings

    try:
        settings = process_settings() if service is Servable.console else Settings()
    except InsecureSettings as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    configure_logging(settings.log_level, json=settings.log_json)
    from armillary.kit import tracing

    tracing.setup(service.value)
    try:
        application = _application(service, settings)
    except (FileNotFoundError, ApiUrlMissing) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    if settings.metrics_port:
        from armillary.kit.metrics import serve_metrics

        serve_metrics(settings.metrics_host, settings.metrics_port)
    from armillary.kit.http_server import server_options

    uvicorn.run(
        application,
        host=host or settings.host,
        port=port or SERVICE_PORTS.get(service.value, CONSOLE_PORT),
        **server_options(settings),
    )


def _application(service: Servable, settings: Settings) -> ASGIApp:
    if service is Servable.console:
        from armillary.console.process import create_console_app

        return create_console_app(settings)
    from armillary.services import create_service_app

    return create_service_app(service.value, settings)


@keys_app.command("create")
def keys_create(
    service: Annotated[Service, typer.Argument(help="The service the key belongs to")],
    directory: Annotated[
        Path | None,
        typer.Option(
            "--dir",
            help="Where to write <service>.key and <service>.pub "
            "[ARMILLARY_SERVICE_PUBLIC_KEYS_DIR, default <home>/service-keys]",
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing key")] = False,
    output: OutputOption = OutputFormat.TABLE,
) -> None:
    """Make SERVICE's Ed25519 key pair. Put <service>.key in that service's secret store
    only; every service that receives its calls needs <service>.pub."""
    from armillary.kit.service_auth import write_key_pair
    from armillary.kit.settings import Settings

    target = directory or Settings().service_keys_dir()
    try:
        private, public = write_key_pair(target, service.value, overwrite=force)
    except FileExistsError as exc:
        err.print(f"[red]{exc}; --force replaces it[/red]")
        raise typer.Exit(1) from exc
    paths = {"service": service.value, "private_key": str(private), "public_key": str(public)}
    if print_data(output, paths):
        return
    console.print(f"Private key: {private}\nPublic key:  {public}")
