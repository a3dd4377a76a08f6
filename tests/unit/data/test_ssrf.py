"""The SSRF guard of ``ingest``: schemes, addresses, redirects, DNS rebinding, limits.

No outside traffic: names resolve through stub resolvers, "public" servers are
``httpx.MockTransport`` handlers that record where the guard connected, and the positive
control is a stdlib HTTP server on 127.0.0.1 admitted by a test-only allow rule.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from armillary.data.ingest.ssrf import (
    BlockedDestination,
    FetchFailed,
    FetchTimeout,
    SourceTooLarge,
    blocked_reason,
    check_address,
    fetch_url,
    parse_allow_networks,
    stream_to_file,
)

PUBLIC_IP = "93.184.216.34"
CSV = b"a,b\n1,x\n2,y\n"


class Recorder:
    """A stand-in for the network: records each connection target, answers with ``respond``."""

    def __init__(self, respond: Callable[[httpx.Request], httpx.Response] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.respond = respond or (lambda request: httpx.Response(200, content=CSV))

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handler)


def resolver_of(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise AssertionError(f"unexpected resolution of {host!r}")
        return table[host]

    return resolve


def no_resolution(host: str, port: int) -> list[str]:
    raise AssertionError(f"an IP literal must not be resolved ({host!r})")


@pytest.fixture
def local_server() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1: ``/data.csv`` is a CSV, ``/big`` 1 MiB, ``/to-local`` a
    redirect to ``/data.csv``. Yields its port and the paths it was asked for."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            if self.path == "/to-local":
                self.send_response(302)
                self.send_header("Location", "/data.csv")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"x" * (1024 * 1024) if self.path == "/big" else CSV
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


# -- refused destinations --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://127.0.0.1:8080/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[2002:7f00:1::1]/",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
        "https://127.0.0.1/",
    ],
)
def test_private_and_special_addresses_are_refused(url: str, tmp_path: Path) -> None:
    network = Recorder()
    with pytest.raises(BlockedDestination, match="refused"):
        fetch_url(
            url,
            tmp_path / "out",
            max_bytes=1024,
            timeout=5,
            resolver=no_resolution,
            inner=network.transport,
        )
    assert network.requests == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://127.0.0.1:70/_stats", "ftp://example.com/x"]
)
def test_other_schemes_are_refused(url: str, tmp_path: Path) -> None:
    network = Recorder()
    with pytest.raises(BlockedDestination, match="scheme"):
        fetch_url(url, tmp_path / "out", max_bytes=1024, timeout=5, inner=network.transport)
    assert network.requests == []


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.1.2.3"],
        ["127.0.0.1"],
        [PUBLIC_IP, "127.0.0.1"],  # any private address refuses the whole name
        ["::1", PUBLIC_IP],
        ["169.254.169.254"],
    ],
)
def test_names_resolving_to_private_addresses_are_refused(
    addresses: list[str], tmp_path: Path
) -> None:
    network = Recorder()
    with pytest.raises(BlockedDestination):
        fetch_url(
            "http://internal.example/data.csv",
            tmp_path / "out",
            max_bytes=1024,
            timeout=5,
            resolver=resolver_of({"internal.example": addresses}),
            inner=network.transport,
        )
    assert network.requests == []


def test_decimal_and_hex_hosts_are_checked_after_resolution(tmp_path: Path) -> None:
    # "0x7f.1" is not an IP literal to ipaddress but the system resolver reads it as
    # 127.0.0.1: what counts is the address the name resolves to.
    network = Recorder()
    with pytest.raises(BlockedDestination, match="loopback"):
        fetch_url(
            "http://0x7f.1/",
            tmp_path / "out",
            max_bytes=1024,
            timeout=5,
            inner=network.transport,
        )
    assert network.requests == []


def test_address_classification() -> None:
    assert blocked_reason(ipaddress.ip_address(PUBLIC_IP)) is None
    assert blocked_reason(ipaddress.ip_address("2606:2800:220:1::1")) is None
    assert "metadata" in (blocked_reason(ipaddress.ip_address("169.254.169.254")) or "")
    assert "CGNAT" in (blocked_reason(ipaddress.ip_address("100.127.255.254")) or "")
    assert "127.0.0.1" in (blocked_reason(ipaddress.ip_address("::ffff:7f00:1")) or "")
    # Teredo whose client address is 10.0.0.1 (stored inverted in the last 32 bits).
    teredo = ipaddress.IPv6Address("2001:0:4136:e378:8000:63bf:f5ff:fffe")
    assert teredo.teredo is not None
    assert teredo.teredo[1] == ipaddress.IPv4Address("10.0.0.1")
    assert blocked_reason(teredo) is not None


# -- redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location", ["http://127.0.0.1/", "http://[::1]:8080/x", "http://internal.example/"]
)
def test_redirect_to_a_private_address_is_refused(location: str, tmp_path: Path) -> None:
    network = Recorder(lambda request: httpx.Response(302, headers={"Location": location}))
    with pytest.raises(BlockedDestination):
        fetch_url(
            "http://public.example/data.csv",
            tmp_path / "out",
            max_bytes=1024,
            timeout=5,
            resolver=resolver_of({"public.example": [PUBLIC_IP], "internal.example": ["10.9.8.7"]}),
            inner=network.transport,
        )
    # The first hop went to the public address; the redirect never left the guard.
    assert [r.url.host for r in network.requests] == [PUBLIC_IP]


def test_redirect_to_another_scheme_is_refused(tmp_path: Path) -> None:
    network = Recorder(
        lambda request: httpx.Response(301, headers={"Location": "file:///etc/passwd"})
    )
    with pytest.raises(BlockedDestination, match="scheme"):
        fetch_url(
            "http://public.example/",
            tmp_path / "out",
            max_bytes=1024,
            timeout=5,
            resolver=resolver_of({"public.example": [PUBLIC_IP]}),
            inner=network.transport,
        )


def test_redirects_are_followed_up_to_the_limit(tmp_path: Path) -> None:
    def respond(request: httpx.Request) -> httpx.Response:
        hop = int(request.url.path.strip("/") or 0)
        if hop < 3:
            return httpx.Response(302, headers={"Location": f"/{hop + 1}"})
        return httpx.Response(200, content=CSV, headers={"Content-Type": "text/csv"})

    network = Recorder(respond)
    result = fetch_url(
        "http://public.example/",
        tmp_path / "out.csv",
        max_bytes=1024,
        timeout=5,
        resolver=resolver_of({"public.example": [PUBLIC_IP]}),
        inner=network.transport,
    )
    assert result.path.read_bytes() == CSV
    assert result.url == "http://public.example/3"
    assert result.content_type == "text/csv"
    assert len(network.requests) == 4

    endless = Recorder(lambda request: httpx.Response(302, headers={"Location": "/again"}))
    with pytest.raises(FetchFailed, match="redirects"):
        fetch_url(
            "http://public.example/",
            tmp_path / "never",
            max_bytes=1024,
            timeout=5,
            resolver=resolver_of({"public.example": [PUBLIC_IP]}),
            inner=endless.transport,
        )
    assert len(endless.requests) == 6  # the first request and five redirects


# -- DNS rebinding ---------------------------------------------------------------------------


class Rebinding:
    """Answers a public address first and loopback afterwards."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return [PUBLIC_IP] if self.calls == 1 else ["127.0.0.1"]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_connection_is_pinned_to_the_checked_address(scheme: str, tmp_path: Path) -> None:
    resolver = Rebinding()
    network = Recorder()
    fetch_url(
        f"{scheme}://public.example:8443/data.csv?x=1",
        tmp_path / "out",
        max_bytes=1024,
        timeout=5,
        resolver=resolver,
        inner=network.transport,
    )
    assert resolver.calls == 1  # resolved once: nothing left for a rebinding answer to change
    (request,) = network.requests
    assert request.url.host == PUBLIC_IP  # the connection target is the checked address
    assert request.url.port == 8443
    assert request.url.path == "/data.csv"
    assert request.url.query == b"x=1"
    assert request.headers["Host"] == "public.example:8443"
    if scheme == "https":
        assert request.extensions["sni_hostname"] == "public.example"
    else:
        assert "sni_hostname" not in request.extensions


def test_rebinding_between_redirect_hops_is_caught(tmp_path: Path) -> None:
    resolver = Rebinding()
    network = Recorder(lambda request: httpx.Response(302, headers={"Location": "/next"}))
    with pytest.raises(BlockedDestination, match=r"127\.0\.0\.1"):
        fetch_url(
            "http://public.example/",
            tmp_path / "out",
            max_bytes=1024,
            timeout=5,
            resolver=resolver,
            inner=network.transport,
        )
    assert [r.url.host for r in network.requests] == [PUBLIC_IP]


# -- limits ----------------------------------------------------------------------------------


def test_size_limit_with_and_without_content_length(tmp_path: Path) -> None:
    declared = Recorder(lambda request: httpx.Response(200, content=b"x" * 2048))
    with pytest.raises(SourceTooLarge):
        fetch_url(
            "http://public.example/",
            tmp_path / "a",
            max_bytes=1024,
            timeout=5,
            resolver=resolver_of({"public.example": [PUBLIC_IP]}),
            inner=declared.transport,
        )

    def chunked(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 600] * 10))  # no Content-Length

    streamed = Recorder(chunked)
    with pytest.raises(SourceTooLarge):
        fetch_url(
            "http://public.example/",
            tmp_path / "b",
            max_bytes=1024,
            timeout=5,
            resolver=resolver_of({"public.example": [PUBLIC_IP]}),
            inner=streamed.transport,
        )
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


def test_time_limit_stops_a_slow_stream(tmp_path: Path) -> None:
    def slow() -> Iterator[bytes]:
        for _ in range(50):
            time.sleep(0.02)
            yield b"x"

    with pytest.raises(FetchTimeout):
        stream_to_file(slow(), tmp_path / "out", max_bytes=10_000, deadline=time.monotonic() + 0.1)
    assert list(tmp_path.iterdir()) == []


def test_server_errors_are_reported(tmp_path: Path) -> None:
    network = Recorder(lambda request: httpx.Response(503))
    with pytest.raises(FetchFailed, match="503"):
        fetch_url(
            "http://public.example/secret-path?token=abc",
            tmp_path / "out",
            max_bytes=1024,
            timeout=5,
            resolver=resolver_of({"public.example": [PUBLIC_IP]}),
            inner=network.transport,
        )


# -- the allow list and the positive control ---------------------------------------------------


def test_parse_allow_networks() -> None:
    rules = parse_allow_networks("127.0.0.1/32:8080, 10.1.0.0/16 [::1]:9000 fd00::/8")
    assert rules == [
        (ipaddress.ip_network("127.0.0.1/32"), 8080),
        (ipaddress.ip_network("10.1.0.0/16"), None),
        (ipaddress.ip_network("::1/128"), 9000),
        (ipaddress.ip_network("fd00::/8"), None),
    ]
    assert parse_allow_networks(None) == []
    assert parse_allow_networks("") == []
    with pytest.raises(ValueError, match="port"):
        parse_allow_networks("127.0.0.1:0")


def test_allow_rules_admit_only_their_network_and_port() -> None:
    rules = parse_allow_networks("127.0.0.1:8080, 10.0.0.0/8")
    assert str(check_address("127.0.0.1", 8080, rules)) == "127.0.0.1"
    assert str(check_address("10.2.3.4", 443, rules)) == "10.2.3.4"
    with pytest.raises(BlockedDestination):
        check_address("127.0.0.1", 8081, rules)
    with pytest.raises(BlockedDestination):
        check_address("192.168.0.1", 80, rules)
    # The metadata address is never admitted, whatever the rules.
    with pytest.raises(BlockedDestination, match="metadata"):
        check_address("169.254.169.254", 80, parse_allow_networks("0.0.0.0/0"))


def test_fetch_from_an_admitted_local_server(
    local_server: tuple[int, list[str]], tmp_path: Path
) -> None:
    port, seen = local_server
    allow = parse_allow_networks(f"127.0.0.1/32:{port}")
    result = fetch_url(
        f"http://127.0.0.1:{port}/data.csv",
        tmp_path / "data.csv",
        max_bytes=1024,
        timeout=10,
        allow=allow,
    )
    assert result.path.read_bytes() == CSV
    assert result.size == len(CSV)
    assert result.content_type == "text/csv"

    # A name resolved (by a stub) to the admitted address, and a redirect on that server.
    named = fetch_url(
        f"http://files.local:{port}/to-local",
        tmp_path / "named.csv",
        max_bytes=1024,
        timeout=10,
        allow=allow,
        resolver=resolver_of({"files.local": ["127.0.0.1"]}),
    )
    assert named.path.read_bytes() == CSV
    assert named.url == f"http://files.local:{port}/data.csv"
    assert seen == ["/data.csv", "/to-local", "/data.csv"]

    with pytest.raises(SourceTooLarge):
        fetch_url(
            f"http://127.0.0.1:{port}/big",
            tmp_path / "big",
            max_bytes=1000,
            timeout=10,
            allow=allow,
        )
    # The same server without the rule, or on another port, is refused.
    with pytest.raises(BlockedDestination):
        fetch_url(f"http://127.0.0.1:{port}/data.csv", tmp_path / "x", max_bytes=1024, timeout=10)
    with pytest.raises(BlockedDestination):
        fetch_url(
            f"http://127.0.0.1:{port + 1}/data.csv",
            tmp_path / "y",
            max_bytes=1024,
            timeout=10,
            allow=allow,
        )


def _self_signed(tmp_path: Path, name: str) -> tuple[Path, Path]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_to_a_pinned_address_verifies_the_original_name(tmp_path: Path) -> None:
    """Connecting to the checked IP keeps TLS honest: SNI and the certificate check use the
    URL's name (a certificate for another name fails), and the Host header is the name."""
    import ssl

    cert, key = _self_signed(tmp_path, "files.local")
    hosts: list[str | None] = []
    server_names: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hosts.append(self.headers.get("Host"))
            self.send_response(200)
            self.send_header("Content-Length", str(len(CSV)))
            self.end_headers()
            self.wfile.write(CSV)

        def log_message(self, *args: object) -> None:
            pass

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)

    def record_sni(sock: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        server_names.append(name)

    server_context.sni_callback = record_sni
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client_context = ssl.create_default_context(cafile=str(cert))
    allow = parse_allow_networks(f"127.0.0.1/32:{port}")
    resolver = resolver_of({"files.local": ["127.0.0.1"], "other.local": ["127.0.0.1"]})
    try:
        result = fetch_url(
            f"https://files.local:{port}/data.csv",
            tmp_path / "out.csv",
            max_bytes=1024,
            timeout=10,
            allow=allow,
            resolver=resolver,
            inner=httpx.HTTPTransport(verify=client_context),
        )
        assert result.path.read_bytes() == CSV
        assert hosts == [f"files.local:{port}"]
        assert server_names == ["files.local"]
        # The same address under a name the certificate does not cover is refused by TLS.
        with pytest.raises(FetchFailed, match="ConnectError"):
            fetch_url(
                f"https://other.local:{port}/data.csv",
                tmp_path / "other.csv",
                max_bytes=1024,
                timeout=10,
                allow=allow,
                resolver=resolver,
                inner=httpx.HTTPTransport(verify=client_context),
            )
    finally:
        server.shutdown()
        server.server_close()


def test_behind_the_egress_proxy_names_are_left_to_it_but_literals_still_checked(
    tmp_path: Path,
) -> None:
    """In a sandbox (no DNS) the worker's proxy resolves and checks names; the guard still
    refuses a private literal before anything leaves the task."""
    proxy = "http://127.0.0.1:8418"
    network = Recorder()
    fetch_url(
        "https://data.example/x.csv",
        tmp_path / "named",
        max_bytes=1024,
        timeout=5,
        resolver=no_resolution,
        inner=network.transport,
        proxy=proxy,
    )
    assert [str(r.url.host) for r in network.requests] == ["data.example"]  # not pinned here
    with pytest.raises(BlockedDestination, match="refused"):
        fetch_url(
            "http://10.0.0.1/x.csv",
            tmp_path / "literal",
            max_bytes=1024,
            timeout=5,
            resolver=no_resolution,
            inner=network.transport,
            proxy=proxy,
        )
    assert len(network.requests) == 1


def test_a_refusal_by_the_egress_proxy_is_the_fetchs_error(tmp_path: Path) -> None:
    refused = Recorder(
        lambda request: httpx.Response(
            403,
            headers={"x-armillary-egress": "refused"},
            extensions={"reason_phrase": b"egress refused: intra port 80: a private address"},
        )
    )
    with pytest.raises(BlockedDestination, match="egress refused: intra port 80"):
        fetch_url(
            "http://intra/x.csv",
            tmp_path / "out",
            max_bytes=1024,
            timeout=5,
            resolver=no_resolution,
            inner=refused.transport,
            proxy="http://127.0.0.1:8418",
        )
