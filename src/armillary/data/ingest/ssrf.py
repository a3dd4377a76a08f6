"""Fetching a user-supplied http(s) URL without letting it reach the platform's own network.

A workflow's ``ingest`` task may name any URL, and the worker that runs it sits inside the
platform's network, next to databases, the object store and the cloud's metadata service. The
guard here (server-side request forgery) is:

1. only ``http`` and ``https``;
2. the host is resolved **once per request** with an injectable resolver, and refused if
   **any** of its addresses is not a public unicast address (loopback, RFC 1918 and unique
   local, link-local, CGNAT, multicast, reserved, unspecified, the cloud metadata addresses,
   and IPv6 forms embedding such an IPv4 address: mapped, compatible, 6to4, Teredo, NAT64);
3. the connection goes **to the checked address** (the URL's host is replaced by it, while the
   ``Host`` header and TLS SNI/certificate check keep the original name), so a DNS answer that
   changes between check and connect (DNS rebinding) cannot redirect it;
4. redirects are followed by hand (at most ``max_redirects``), each hop checked the same way;
5. the body streams to disk and stops at ``max_bytes``; the whole fetch has one deadline.

httpx has no hook between name resolution and connect, hence the small transport below. In a
sandbox (which has no network) the fetch goes through the worker's egress proxy instead
(``proxy``, from ``ARMILLARY_EGRESS_PROXY``): the proxy resolves, checks and pins each host
name, and the checks here stay for address literals and schemes, as defence in depth. An
operator (or a test) may admit chosen networks with ``allow`` rules, parsed from the
``ARMILLARY_DATA_INGEST_ALLOW_NETWORKS`` setting by :func:`parse_allow_networks`; the metadata
addresses are never admitted. The address policy itself is :mod:`armillary.kit.egress`,
shared with alert channels.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

# The address policy is the platform's one (kit.egress); re-exported for this module's users.
from armillary.kit.egress import AllowRule, IPAddress, refusal
from armillary.kit.egress import blocked_reason as blocked_reason
from armillary.kit.egress import parse_allow_networks as parse_allow_networks

#: ``(host, port) -> addresses``; the default asks the system (``socket.getaddrinfo``).
Resolver = Callable[[str, int], list[str]]

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_MAX_REDIRECTS = 5
_CHUNK = 1024 * 1024
_USER_AGENT = "armillary-ingest"
_EGRESS_HEADER = "x-armillary-egress"  # the egress proxy's own answers (not the origin's)


class IngestError(Exception):
    """A source could not be fetched."""


class BlockedDestination(IngestError):
    """The URL's scheme, or an address its host resolves to, is not allowed."""


class SourceTooLarge(IngestError):
    """The source is larger than the task's ``max_bytes``."""


class FetchTimeout(IngestError):
    """The source did not arrive within the task's time limit."""


class FetchFailed(IngestError):
    """The server answered with an error, or redirected too often or oddly."""


@dataclass(frozen=True, slots=True)
class FetchResult:
    path: Path
    size: int
    sha256: str
    content_type: str | None
    url: str
    """The final URL, after redirects."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolves ``host`` to (deduplicated, in its order)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise FetchFailed(f"cannot resolve {host!r}: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def allow_rules_from_env(environ: dict[str, str] | None = None) -> list[AllowRule]:
    """The operator's rules, from ``ARMILLARY_DATA_INGEST_ALLOW_NETWORKS`` (none if unset)."""
    env = os.environ if environ is None else environ
    return parse_allow_networks(env.get("ARMILLARY_DATA_INGEST_ALLOW_NETWORKS"))


def check_address(address: str, port: int, allow: Sequence[AllowRule] = ()) -> IPAddress:
    """``address`` as an IP, or :class:`BlockedDestination` if it may not be connected to."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("%eth0")
    reason = refusal(ip, port, allow)
    if reason is None:
        return ip
    raise BlockedDestination(f"refused to connect to {ip} port {port}: {reason}")


class GuardedTransport(httpx.BaseTransport):
    """Checks each request's destination and connects to the checked address only.

    ``inner`` does the actual HTTP (a fresh :class:`httpx.HTTPTransport` by default; tests
    pass a mock to see where a request would have gone). Use one instance per request, as
    :func:`fetch_url` does: pooled connections are keyed by address, and one opened with a
    different host's SNI must never be reused.
    """

    def __init__(
        self,
        *,
        resolver: Resolver = system_resolver,
        allow: Sequence[AllowRule] = (),
        inner: httpx.BaseTransport | None = None,
        proxy: str | None = None,
    ) -> None:
        self._resolver = resolver
        self._allow = tuple(allow)
        self._proxy = proxy
        # No environment proxies: a proxy would do its own resolution and defeat the pin. The
        # one explicit exception is the worker's egress proxy, which pins what it checks.
        self._inner = inner or httpx.HTTPTransport(trust_env=False, retries=0, proxy=proxy)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ALLOWED_SCHEMES:
            raise BlockedDestination(f"refused scheme {url.scheme!r}: only http and https")
        host = url.raw_host.decode("ascii")  # IDNA-encoded; IPv6 without brackets
        port = url.port or (443 if url.scheme == "https" else 80)
        if not host:
            raise BlockedDestination("refused: the URL has no host")
        literal = _ip_literal(host)
        if self._proxy is not None and not literal:
            return self._inner.handle_request(request)  # the egress proxy resolves and checks
        # One resolution, whose answer is both checked and used: no second lookup follows.
        addresses = [host] if literal else self._resolver(host, port)
        if not addresses:
            raise FetchFailed(f"{host!r} did not resolve to any address")
        checked = [check_address(address, port, self._allow) for address in addresses]
        pinned = checked[0]
        # The Host header was set from the original URL when the request was built; only the
        # address to connect to changes. For TLS, SNI and the certificate check use the name.
        request.url = url.copy_with(host=str(pinned))
        if url.scheme == "https" and not literal:
            request.extensions = {**request.extensions, "sni_hostname": host}
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def fetch_url(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout: float,
    resolver: Resolver = system_resolver,
    allow: Sequence[AllowRule] = (),
    max_redirects: int = DEFAULT_MAX_REDIRECTS,
    inner: httpx.BaseTransport | None = None,
    proxy: str | None = None,
) -> FetchResult:
    """GET ``url`` into ``dest`` through the guard; see the module's description."""
    deadline = time.monotonic() + timeout
    current = httpx.URL(url)
    for _ in range(max_redirects + 1):
        remaining = _remaining(deadline)
        # A fresh transport per hop: its own resolution and check, no pooled connection.
        transport = GuardedTransport(resolver=resolver, allow=allow, inner=inner, proxy=proxy)
        with (
            httpx.Client(
                transport=transport,
                follow_redirects=False,
                trust_env=False,
                timeout=httpx.Timeout(remaining),
                headers={"User-Agent": _USER_AGENT, "Accept": "*/*"},
            ) as client,
            _timeouts_as_ours(),
            client.stream("GET", current) as response,
        ):
            if proxy is not None and response.headers.get(_EGRESS_HEADER) == "refused":
                raise BlockedDestination(response.reason_phrase)
            if response.is_redirect:
                location = response.headers.get("Location")
                if not location:
                    raise FetchFailed(f"redirect ({response.status_code}) without a Location")
                current = current.join(location)
                continue
            if response.is_error:
                raise FetchFailed(f"{_display(current)} answered {response.status_code}")
            size, digest = stream_to_file(
                response.iter_bytes(_CHUNK),
                dest,
                max_bytes=max_bytes,
                deadline=deadline,
                declared_length=response.headers.get("Content-Length"),
            )
            return FetchResult(
                dest, size, digest, response.headers.get("Content-Type"), str(current)
            )
    raise FetchFailed(f"more than {max_redirects} redirects")


@contextlib.contextmanager
def _timeouts_as_ours() -> Iterator[None]:
    """httpx's timeouts as :class:`FetchTimeout`, its other errors as :class:`FetchFailed`."""
    try:
        yield
    except httpx.TimeoutException:
        raise FetchTimeout("the source did not arrive within the time limit") from None
    except httpx.ProxyError as exc:
        # The egress proxy refused a CONNECT (403, its reason in the message) or failed.
        refused = str(exc).startswith("403")
        raise (BlockedDestination if refused else FetchFailed)(str(exc)) from None
    except httpx.HTTPError as exc:
        raise FetchFailed(f"fetch failed: {type(exc).__name__}: {exc}") from None


def stream_to_file(
    chunks: Iterable[bytes],
    dest: Path,
    *,
    max_bytes: int,
    deadline: float | None = None,
    declared_length: str | None = None,
) -> tuple[int, str]:
    """Write ``chunks`` to ``dest`` (complete or not at all); return size and SHA-256.

    Stops with :class:`SourceTooLarge` past ``max_bytes`` (of decoded bytes, so a compressed
    answer cannot expand beyond it) and with :class:`FetchTimeout` past ``deadline``
    (``time.monotonic()``), checked after every chunk.
    """
    if declared_length and declared_length.isdigit() and int(declared_length) > max_bytes:
        raise SourceTooLarge(f"the source is larger than {max_bytes} bytes ({declared_length})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("xb") as file:
            for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise SourceTooLarge(f"the source is larger than {max_bytes} bytes")
                if deadline is not None and time.monotonic() > deadline:
                    raise FetchTimeout("the source did not arrive within the time limit")
                file.write(chunk)
                digest.update(chunk)
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


def _remaining(deadline: float) -> float:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchTimeout("the source did not arrive within the time limit")
    return remaining


def _display(url: httpx.URL) -> str:
    # Without userinfo or query (either may hold a secret).
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))
