"""The options every Armillary HTTP server runs uvicorn with (the API of `armillary up` and
each `armillary serve <service>`), so the two cannot drift apart."""

from __future__ import annotations

from typing import Any

from armillary.kit.settings import Settings
from armillary.kit.tls import uvicorn_options


def server_options(settings: Settings) -> dict[str, Any]:
    return {
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,  # client addresses come from our own trusted-proxy rule
        "server_header": False,
        # Idle connections outlive the gateway's upstream idle timeout: the proxy closes
        # first, so it never reuses a connection the server is closing.
        "timeout_keep_alive": settings.http_keep_alive_seconds,
        # HTTPS only with ARMILLARY_TLS_CERT_FILE / _KEY_FILE.
        **uvicorn_options(settings.tls_cert_file, settings.tls_key_file),
    }
