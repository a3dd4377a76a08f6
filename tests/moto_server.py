"""A moto S3 server process on loopback for the whole session (a pytest plugin).

Registered from ``tests/conftest.py`` so every test directory (storage, data, ...) can ask for
``moto_endpoint`` and run the S3 backend over real HTTP against it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest

from tests.ports import free_port

ACCESS_KEY = "testing-access-key"
SECRET_KEY = "testing-secret-key"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def _aws_env() -> Iterator[None]:
    # Dummy credentials, and no lookups of real ones (profile files, instance metadata).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        mp.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.delenv("AWS_PROFILE", raising=False)
        mp.delenv("AWS_SESSION_TOKEN", raising=False)
        yield


@pytest.fixture(scope="session")
def moto_endpoint(_aws_env: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto S3 server process started for this session on a free loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    endpoint = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if process.poll() is not None:
                    pytest.fail(f"moto server exited early: {log_path.read_text()[-2000:]}")
                try:
                    httpx.get(f"{endpoint}/moto-api/", timeout=1.0)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        pytest.fail("moto server did not start within 30 s")
                    time.sleep(0.1)
            yield endpoint
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class SecretsClock:
    """Stands in for the Secrets Manager cache's clock: tests move it past the TTL."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def secretsmanager(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A boto3 Secrets Manager client of the moto server, which the platform's own secret
    reads (``kit.secret_sources``) reach too, with an empty cache."""
    from armillary.kit.secret_sources import SECRETS_MANAGER

    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_endpoint)
    SECRETS_MANAGER.forget()
    yield boto3.client("secretsmanager", endpoint_url=moto_endpoint)
    SECRETS_MANAGER.forget()


@pytest.fixture
def secrets_clock(monkeypatch: pytest.MonkeyPatch) -> SecretsClock:
    from armillary.kit.secret_sources import SECRETS_MANAGER

    clock = SecretsClock()
    monkeypatch.setattr(SECRETS_MANAGER, "clock", clock)
    return clock
