"""TLS at the gateway: HTTPS on the public listener (TLS 1.2+, forward-secret AEAD suites,
HSTS on every answer) when given a certificate, and verified TLS to ``https://`` upstreams
(chain against the platform's CA, name against the upstream's host)."""

from __future__ import annotations

import ipaddress
import ssl
from typing import Any

from armillary.kit.tls import HSTS

from .settings import GatewaySettings

_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
# Envoy (BoringSSL) names of the suites kit.tls.SERVER_CIPHERS allows; TLS 1.3's are fixed.
CIPHER_SUITES = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
]


def downstream(settings: GatewaySettings) -> dict[str, Any] | None:
    """The public listener's TLS, or None for plain HTTP (loopback, or behind a proxy)."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TLS + "DownstreamTlsContext",
            "common_tls_context": {
                "tls_params": {
                    "tls_minimum_protocol_version": "TLSv1_2",
                    "cipher_suites": CIPHER_SUITES,
                },
                "tls_certificates": [
                    {
                        "certificate_chain": {"filename": str(settings.tls_cert_file)},
                        "private_key": {"filename": str(settings.tls_key_file)},
                    }
                ],
                "alpn_protocols": ["h2", "http/1.1"],
            },
        },
    }


def hsts_headers(settings: GatewaySettings) -> list[dict[str, Any]]:
    if downstream(settings) is None:
        return []
    header = {"key": "Strict-Transport-Security", "value": HSTS}
    return [{"header": header, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]


def upstream(host: str, settings: GatewaySettings) -> dict[str, Any]:
    """TLS to an ``https://`` service: its certificate must chain to the platform's CA (or
    the system's) and name ``host``."""
    ca = settings.tls_ca_file or ssl.get_default_verify_paths().cafile
    try:
        ipaddress.ip_address(host)
        san_type = "IP_ADDRESS"
    except ValueError:
        san_type = "DNS"
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": _TLS + "UpstreamTlsContext",
            "sni": host,
            "common_tls_context": {
                "tls_params": {"tls_minimum_protocol_version": "TLSv1_2"},
                "validation_context": {
                    "trusted_ca": {"filename": str(ca)},
                    "match_typed_subject_alt_names": [
                        {"san_type": san_type, "matcher": {"exact": host}}
                    ],
                },
            },
        },
    }
