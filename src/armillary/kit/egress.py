"""Which addresses the platform may connect to on a user's behalf (server-side request
forgery), in one place for every outbound connection a user can aim: ``ingest`` URLs, alert
webhooks and SMTP servers.

Refused: anything that is not a public unicast address (loopback, RFC 1918 and unique local,
link-local, CGNAT, multicast, reserved, unspecified), the cloud metadata addresses (never
admitted, even by an operator's allow rule), and IPv6 forms embedding such an IPv4 address
(mapped, compatible, 6to4, Teredo, NAT64).

A host name is resolved **once**, every address it resolves to is checked, and the caller
connects to the checked address (:func:`resolve_checked`): a DNS answer that changes between
the check and the connection (DNS rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence

#: Set in a sandbox of a task type that declares egress: the URL of its only way out, the
#: worker's egress proxy (which applies this policy to each destination it is asked for).
PROXY_ENV = "ARMILLARY_EGRESS_PROXY"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: A network admitted despite the rules, on one port or (``None``) on any.
AllowRule = tuple[IPNetwork, int | None]
#: ``(host, port) -> addresses``, asynchronously (the default asks the system).
AsyncResolver = Callable[[str, int], Awaitable[list[str]]]

# Cloud metadata services: never admitted, not even by an allow rule.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
# Named for clear messages; ``is_global`` below catches the rest of the special ranges.
_BLOCKED_NETWORKS: tuple[tuple[str, IPNetwork], ...] = tuple(
    (name, ipaddress.ip_network(net))
    for name, net in (
        ("unspecified", "0.0.0.0/8"),
        ("private", "10.0.0.0/8"),
        ("CGNAT", "100.64.0.0/10"),
        ("loopback", "127.0.0.0/8"),
        ("link-local", "169.254.0.0/16"),
        ("private", "172.16.0.0/12"),
        ("IETF protocol assignments", "192.0.0.0/24"),
        ("private", "192.168.0.0/16"),
        ("benchmarking", "198.18.0.0/15"),
        ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"),
        ("unspecified", "::/128"),
        ("loopback", "::1/128"),
        ("unique local", "fc00::/7"),
        ("link-local", "fe80::/10"),
        ("site-local", "fec0::/10"),
        ("multicast", "ff00::/8"),
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class RefusedDestination(Exception):
    """The destination may not be connected to; ``str()`` says why (no secret in it)."""


class UnresolvableHost(Exception):
    """The host name did not resolve to any address."""


def parse_allow_networks(value: str | None) -> list[AllowRule]:
    """Rules from ``"127.0.0.1/32:8080, 10.1.0.0/16, [::1]:8080"`` (comma or space separated;
    an IPv6 network with a port is written in brackets)."""
    rules: list[AllowRule] = []
    for item in (value or "").replace(",", " ").split():
        port: int | None = None
        if item.startswith("["):
            network, _, rest = item[1:].partition("]")
            if rest:
                port = int(rest.removeprefix(":"))
        elif item.count(":") == 1:
            network, _, port_text = item.partition(":")
            port = int(port_text)
        else:
            network = item
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"bad port in allow rule {item!r}")
        rules.append((ipaddress.ip_network(network, strict=False), port))
    return rules


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address (Python undoes the obfuscation)
    if ip in _NAT64 or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` may not be connected to, or ``None`` for a public unicast address."""
    if ip in METADATA:
        return "a cloud metadata address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None and (reason := blocked_reason(embedded)):
            return f"an IPv6 form of {embedded} ({reason})"
    for name, network in _BLOCKED_NETWORKS:
        if ip.version == network.version and ip in network:
            return f"a {name} address"
    if ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback:
        return "a special-purpose address"
    if ip.is_private or ip.is_link_local or not ip.is_global:
        return "not a public address"
    return None


def refusal(ip: IPAddress, port: int, allow: Sequence[AllowRule] = ()) -> str | None:
    """Why ``ip``:``port`` is refused after the operator's ``allow`` rules, or None."""
    reason = blocked_reason(ip)
    if reason is None or ip in METADATA:
        return reason
    for network, allowed_port in allow:
        if ip.version == network.version and ip in network and allowed_port in (None, port):
            return None
    return reason


def ip_literal(host: str) -> IPAddress | None:
    """``host`` as an address when it is one (an IPv6 zone such as ``%eth0`` dropped)."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolves ``host`` to (deduplicated, in its order)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UnresolvableHost("the host name does not resolve") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(
    host: str,
    port: int,
    *,
    allow: Sequence[AllowRule] = (),
    allow_private: bool = False,
    resolver: AsyncResolver = system_resolver,
) -> IPAddress:
    """The one address to connect to for ``host``: resolved once, and every address it
    resolves to checked (``allow_private`` skips the check, for development and tests).
    :class:`RefusedDestination` or :class:`UnresolvableHost` otherwise."""
    literal = ip_literal(host)
    addresses = [literal] if literal else [ip_literal(a) for a in await resolver(host, port)]
    found = [a for a in addresses if a is not None]
    if not found:
        raise UnresolvableHost("the host name does not resolve")
    if not allow_private:
        for address in found:
            reason = refusal(address, port, allow)
            if reason is not None:
                raise RefusedDestination(f"the destination is {reason} (not allowed)")
    return found[0]
