"""TLS on every hop, against real TLS listeners on this machine signed by a local CA
(trustme): a private PostgreSQL cluster with `ssl=on` and only `hostssl` access, a private
redis-server on a TLS port, and the embedded server over HTTPS. The right CA and host name
connect; a wrong CA or a wrong host name fails closed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest
import trustme
import uvicorn
from sqlalchemy import text

from armillary.app import create_app
from armillary.gateway.runner import envoy_command, write_config
from armillary.gateway.settings import SERVICES as GATEWAY_SERVICES
from armillary.gateway.settings import GatewaySettings
from armillary.identity.client import IdentityClient
from armillary.kit import service_client
from armillary.kit.backup import _libpq
from armillary.kit.broker import amqp_ssl_context, declare_core
from armillary.kit.cache import create_cache, healing_client
from armillary.kit.db import Database, connect_direct
from armillary.kit.errors import ServiceUnavailable
from armillary.kit.settings import Settings
from armillary.kit.storage import S3ObjectStore, StorageSettings
from armillary.kit.storage.admin import init_bucket
from armillary.kit.tls import HSTS, uvicorn_options
from armillary.workflows.scheduling.signals import asyncpg_dsn
from tests.conftest import make_settings
from tests.faults.private_rabbitmq import private_rabbitmq
from tests.faults.private_services import PrivatePostgres, private_postgres
from tests.ports import free_port

# OpenSSL's and rustls's (the object store client's) words for a certificate that does not
# name the host asked for.
HOSTNAME_MISMATCH = re.compile(r"(?i)hostname mismatch|doesn't match|NotValidForName")


@pytest.fixture(scope="module")
def pki() -> Iterator[tuple[Path, Path, Path, Path]]:
    """(CA bundle, server certificate chain, server key, another CA's bundle) in a directory
    PostgreSQL's user can read; the certificate names 127.0.0.1 only."""
    root = Path(tempfile.mkdtemp(prefix="armillary-pki-"))
    ca, stranger = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    paths = (root / "ca.pem", root / "server.pem", root / "server.key", root / "other-ca.pem")
    ca.cert_pem.write_to_path(str(paths[0]))
    server.private_key_pem.write_to_path(str(paths[2]))
    paths[1].write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    stranger.cert_pem.write_to_path(str(paths[3]))
    paths[2].chmod(0o600)
    if os.geteuid() == 0:
        for path in (root, *paths):
            shutil.chown(path, "postgres", "postgres")
    yield paths
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_postgres(pki: tuple[Path, Path, Path, Path]) -> Iterator[PrivatePostgres]:
    _, cert, key, _ = pki
    server = private_postgres()
    try:
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n")
        # TCP only over TLS; the local socket (initdb's trust) stays for administration.
        (server.data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
        )
        server.stop()
        server.start()
        server_db = "armillary"
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                "createdb",
                "-h",
                str(server.root),
                "-p",
                str(server.port),
                server_db,
            ]
            if os.geteuid() == 0
            else ["createdb", "-h", str(server.root), "-p", str(server.port), server_db],
            check=True,
            capture_output=True,
        )
        yield server
    finally:
        server.remove()


def tls_settings(home: Path, server: PrivatePostgres, host: str, ca: Path) -> Settings:
    url = server.url("armillary").replace("127.0.0.1", host)
    return make_settings(
        home, database_url=url, database_sslmode="verify-full", database_ca_file=ca
    )


async def select_one(settings: Settings) -> int:
    db = Database.from_settings(settings)
    try:
        async with db.sessionmaker() as session:
            return int((await session.execute(text("SELECT 1"))).scalar_one())
    finally:
        await db.dispose()


async def test_postgresql_verify_full(
    tls_postgres: PrivatePostgres, pki: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    ca, _, _, stranger = pki
    good = tls_settings(tmp_path, tls_postgres, "127.0.0.1", ca)
    assert await select_one(good) == 1
    db = Database.from_settings(good)
    dsn = asyncpg_dsn(db.url)
    assert dsn is not None
    connection = await connect_direct(dsn, ssl=db.ssl)  # leader lock and LISTEN
    try:
        assert await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
    finally:
        await connection.close()
        await db.dispose()
    # libpq's tools (the backups' pg_dump) verify the same way.
    args, env = _libpq(db)
    dumped = subprocess.run(
        ["pg_dump", "--schema-only", *args], env=env, capture_output=True, check=False
    )
    assert dumped.returncode == 0, dumped.stderr
    assert env["PGSSLMODE"] == "verify-full"
    # Plaintext is refused by the server; a wrong CA or host name by the client.
    plain_dsn = asyncpg_dsn(tls_postgres.url("armillary"))
    assert plain_dsn is not None
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no pg_hba"):
        await asyncpg.connect(plain_dsn, ssl=False)
    with pytest.raises(ssl.SSLCertVerificationError):
        await select_one(tls_settings(tmp_path, tls_postgres, "127.0.0.1", stranger))
    with pytest.raises(ssl.SSLCertVerificationError, match=r"(?i)hostname|IP address mismatch"):
        await select_one(tls_settings(tmp_path, tls_postgres, "localhost", ca))


@pytest.fixture
def tls_redis(pki: tuple[Path, Path, Path, Path]) -> Iterator[int]:
    ca, cert, key, _ = pki
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(ca),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        process.kill()
        process.wait()


async def ping(url: str, ca: Path) -> bool:
    client = healing_client(url, ca)
    try:
        for _ in range(50):  # the server may still be starting
            try:
                return bool(await client.ping())
            except ConnectionRefusedError:
                await asyncio.sleep(0.1)
            except Exception as exc:
                if "Connection refused" not in str(exc):
                    raise
                await asyncio.sleep(0.1)
        return False
    finally:
        await client.aclose()


async def test_redis_over_tls(tls_redis: int, pki: tuple[Path, Path, Path, Path]) -> None:
    ca, _, _, stranger = pki
    assert await ping(f"rediss://127.0.0.1:{tls_redis}/0", ca)
    cache = create_cache(f"rediss://127.0.0.1:{tls_redis}/0", b"k" * 32, ca_file=ca)
    await cache.set("entry", {"a": 1}, 60)
    assert await cache.get("entry") == {"a": 1}
    await cache.close()
    with pytest.raises(Exception, match=r"(?i)certificate verify failed"):
        await ping(f"rediss://127.0.0.1:{tls_redis}/0", stranger)
    with pytest.raises(Exception, match=r"(?i)certificate verify failed|mismatch"):
        await ping(f"rediss://localhost:{tls_redis}/0", ca)


@pytest.fixture
async def https_server(
    pki: tuple[Path, Path, Path, Path], settings_factory: object
) -> AsyncIterator[str]:
    _, cert, key, _ = pki
    settings = settings_factory(tls_cert_file=cert, tls_key_file=key)  # type: ignore[operator]
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, configure_logs=False),
        host="127.0.0.1",
        port=port,
        log_config=None,
        **uvicorn_options(cert, key),  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(300):
        if server.started:
            break
        await asyncio.sleep(0.05)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_the_server_speaks_https_only_with_hsts(
    https_server: str, pki: tuple[Path, Path, Path, Path]
) -> None:
    ca, _, _, stranger = pki
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(ca))) as client:
        answer = await client.get(f"https://{https_server}/healthz")
    assert answer.status_code == 200
    assert answer.headers["strict-transport-security"] == HSTS
    # Plain HTTP on the same port gets no answer.
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"http://{https_server}/healthz")
    # Nothing older than TLS 1.2 is agreed, and a client that trusts another CA refuses it.
    old = ssl.create_default_context(cafile=str(ca))
    old.minimum_version = ssl.TLSVersion.TLSv1
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    async with httpx.AsyncClient(verify=old) as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"https://{https_server}/healthz")
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(stranger))) as c:
        with pytest.raises(httpx.HTTPError):
            await c.get(f"https://{https_server}/healthz")


@pytest.fixture
def tls_moto(pki: tuple[Path, Path, Path, Path]) -> Iterator[str]:
    _, cert, key, _ = pki
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
            "-s",
            "-c",
            str(cert),
            "-k",
            str(key),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


async def test_s3_over_https_with_a_private_ca(
    tls_moto: str, pki: tuple[Path, Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, _, _, stranger = pki
    for name, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():
        monkeypatch.setenv(name, value)

    def storage(ca_file: Path, endpoint: str = tls_moto) -> StorageSettings:
        return StorageSettings(
            backend="s3",
            s3_bucket="tls-bucket",
            s3_endpoint_url=endpoint,
            s3_access_key_id="k",
            s3_secret_access_key="s",  # type: ignore[arg-type]
            s3_ca_file=ca_file,
        )

    for _ in range(100):  # moto's start-up
        try:
            await asyncio.to_thread(init_bucket, storage(ca))
            break
        except Exception as exc:
            if "Connect" not in type(exc).__name__ and "connect" not in str(exc):
                raise
            await asyncio.sleep(0.1)
    store = S3ObjectStore(storage(ca))
    await store.put_bytes("hello.txt", b"over TLS")
    assert await store.get_bytes("hello.txt") == b"over TLS"
    with pytest.raises(Exception, match=r"(?i)certificate|ssl"):
        await S3ObjectStore(storage(stranger)).get_bytes("hello.txt")
    with pytest.raises(Exception, match=r"(?i)certificate|ssl"):
        await asyncio.to_thread(init_bucket, storage(stranger))
    # The right CA, but the certificate is for 127.0.0.1, not for the name asked for.
    misnamed = tls_moto.replace("127.0.0.1", "localhost")
    with pytest.raises(Exception) as wrong_name:
        await S3ObjectStore(storage(ca, misnamed)).get_bytes("hello.txt")
    assert HOSTNAME_MISMATCH.search(str(wrong_name.value))
    with pytest.raises(Exception) as wrong_name:
        await asyncio.to_thread(init_bucket, storage(ca, misnamed))
    assert HOSTNAME_MISMATCH.search(str(wrong_name.value))


async def test_service_calls_verify_https_upstreams(
    https_server: str, pki: tuple[Path, Path, Path, Path]
) -> None:
    ca, _, _, stranger = pki
    try:
        service_client.trust(ca)
        trusted = IdentityClient.over_http(f"https://{https_server}")
        assert (await trusted.jwks()).keys
        await trusted.aclose()
        service_client.trust(stranger)
        refused = IdentityClient.over_http(f"https://{https_server}")
        with pytest.raises(ServiceUnavailable) as wrong_ca:
            await refused.jwks()
        await refused.aclose()
        assert "certificate verify failed" in str(wrong_ca.value.__cause__)
        # The right CA, but the certificate names 127.0.0.1 and the call asks for localhost.
        service_client.trust(ca)
        misnamed = IdentityClient.over_http(
            f"https://{https_server.replace('127.0.0.1', 'localhost')}"
        )
        with pytest.raises(ServiceUnavailable) as wrong_name:
            await misnamed.jwks()
        await misnamed.aclose()
        assert HOSTNAME_MISMATCH.search(str(wrong_name.value.__cause__))
    finally:
        service_client.trust(None)


async def test_rabbitmq_over_tls(pki: tuple[Path, Path, Path, Path]) -> None:
    ca, cert, key, stranger = pki
    tls_port = free_port()
    node = private_rabbitmq(
        f"listeners.ssl.default = {tls_port}\n"
        f"ssl_options.cacertfile = {ca}\nssl_options.certfile = {cert}\n"
        f"ssl_options.keyfile = {key}\nssl_options.verify = verify_none\n"
        "ssl_options.fail_if_no_peer_cert = false\n"
    )
    try:
        url = f"amqps://guest:guest@127.0.0.1:{tls_port}/"
        connection = await aio_pika.connect(url, ssl_context=amqp_ssl_context(url, ca))
        channel = await connection.channel()
        await declare_core(channel)  # the events exchange, over TLS
        await connection.close()
        with pytest.raises(Exception, match=r"(?i)certificate verify failed"):
            await aio_pika.connect(url, ssl_context=amqp_ssl_context(url, stranger), timeout=5)
        by_name = f"amqps://guest:guest@localhost:{tls_port}/"
        with pytest.raises(Exception, match=r"(?i)certificate verify failed|mismatch"):
            await aio_pika.connect(by_name, ssl_context=amqp_ssl_context(by_name, ca), timeout=5)
    finally:
        node.remove()


async def start_envoy(settings: GatewaySettings, tmp_path: Path) -> subprocess.Popen[bytes]:
    config = write_config(settings, tmp_path / f"envoy-{settings.port}.yaml")
    log = (tmp_path / f"envoy-{settings.port}.log").open("wb")
    return subprocess.Popen(envoy_command(settings, config), stdout=log, stderr=subprocess.STDOUT)


async def test_the_gateway_speaks_https_and_verifies_https_upstreams(
    https_server: str, pki: tuple[Path, Path, Path, Path], tmp_path: Path
) -> None:
    ca, cert, key, stranger = pki

    def gateway(upstream_ca: Path) -> GatewaySettings:
        return GatewaySettings.model_validate(
            {
                **{f"{s}_url": f"https://{https_server}" for s in GATEWAY_SERVICES},
                "host": "127.0.0.1",
                "port": free_port(),
                "gateway_admin_port": free_port(),
                "gateway_stats_port": free_port(),
                "tls_cert_file": cert,
                "tls_key_file": key,
                "tls_ca_file": upstream_ca,
            }
        )

    trusting, foreign = gateway(ca), gateway(stranger)
    processes = [await start_envoy(s, tmp_path) for s in (trusting, foreign)]
    verify = ssl.create_default_context(cafile=str(ca))
    try:
        async with httpx.AsyncClient(verify=verify, timeout=5) as client:
            url = f"https://127.0.0.1:{trusting.port}"
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.get(f"{url}/api/v1/auth/jwks")
                    if answer.status_code == 200:
                        break
                await asyncio.sleep(0.1)
            assert answer.status_code == 200, answer.text
            assert answer.headers["strict-transport-security"] == HSTS
            refused = await client.get(f"{url}/api/v1/projects")
            assert refused.status_code == 401
            assert refused.headers["strict-transport-security"] == HSTS
            # An upstream whose certificate the gateway cannot verify is never reached.
            bad = f"https://127.0.0.1:{foreign.port}"
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.get(f"{bad}/api/v1/auth/jwks")
                    break
                await asyncio.sleep(0.1)
            assert answer.status_code == 503
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.HTTPError):
                await plain.get(f"http://127.0.0.1:{trusting.port}/api/v1/auth/jwks")
    finally:
        for process in processes:
            process.terminate()
            process.wait(15)
