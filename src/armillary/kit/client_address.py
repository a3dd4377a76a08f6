"""The client's address: the socket peer, or X-Forwarded-For only behind a trusted proxy."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address

from starlette.types import Scope


def client_address(scope: Scope, trusted: list[IPv4Network | IPv6Network]) -> str | None:
    peer = scope.get("client")
    peer_host: str | None = str(peer[0]) if peer else None
    if peer_host is None or not trusted or not _is_trusted(peer_host, trusted):
        return peer_host
    forwarded = _header(scope, b"x-forwarded-for")
    if not forwarded:
        return peer_host
    # Walk from the right: the first hop that is not one of our proxies is the client.
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _valid(hop) else peer_host
    return hops[0] if hops and _valid(hops[0]) else peer_host


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _valid(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def _is_trusted(host: str, trusted: list[IPv4Network | IPv6Network]) -> bool:
    try:
        addr = ip_address(host)
    except ValueError:
        return False
    return any(addr in net for net in trusted)
