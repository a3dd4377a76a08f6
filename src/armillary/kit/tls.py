"""TLS on every hop: the contexts the platform's clients and its server use, and which hops
are still plaintext (the production profile refuses those that leave the machine).

Clients verify the peer's certificate and its host name against a CA bundle: the hop's own
(``ARMILLARY_DATABASE_CA_FILE``, ``ARMILLARY_REDIS_CA_FILE``, ...), else
``ARMILLARY_TLS_CA_FILE``, else the system's. Nothing older than TLS 1.2 is spoken.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
from pathlib import Path
from urllib.parse import urlsplit

# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3's are always on and all AEAD).
SERVER_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"
# One year; browsers and clients then refuse plain HTTP to this host.
HSTS = "max-age=31536000; includeSubDomains"


def client_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verifies the certificate chain and the host name (``verify-full``)."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@functools.lru_cache(maxsize=8)
def shared_client_context(ca_file: Path | None) -> ssl.SSLContext:
    """One context per CA bundle for many short-lived clients (loading CAs costs ms)."""
    return client_context(ca_file)


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(SERVER_CIPHERS)
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


def uvicorn_options(cert_file: Path | None, key_file: Path | None) -> dict[str, object]:
    """uvicorn's TLS options: HTTPS only on the port (a plain HTTP request is not answered),
    TLS 1.2+ with forward-secret AEAD suites."""
    if cert_file is None:
        return {}
    if key_file is None:
        raise ValueError("ARMILLARY_TLS_CERT_FILE needs ARMILLARY_TLS_KEY_FILE")
    # uvicorn's default protocol (PROTOCOL_TLS_SERVER) negotiates TLS 1.2 or 1.3; these
    # suites exist only from TLS 1.2 on, so nothing older can be agreed.
    return {
        "ssl_certfile": str(cert_file),
        "ssl_keyfile": str(key_file),
        "ssl_ciphers": SERVER_CIPHERS,
    }


def is_loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(url: str) -> str | None:
    return urlsplit(url).hostname


def plaintext_service_urls(urls: dict[str, str]) -> list[str]:
    """The services of ``urls`` (service name to base URL) reached over plain ``http://`` on
    another machine. A TLS-terminating proxy in front of a service does not change this: the
    caller reaches the proxy, so its URL is then ``https://``."""
    return [
        f"the {service} service (an https:// ARMILLARY_{service.upper()}_URL)"
        for service, url in urls.items()
        if urlsplit(url).scheme != "https" and not is_loopback(url_host(url))
    ]
