"""Inside a sandbox: serve the platform's Unix socket on a loopback port.

The sandbox has its own network namespace with only a loopback interface, so
``ARMILLARY_API_URL=http://127.0.0.1:<port>`` works for any HTTP client (httpx, requests,
MLflow's) while nothing outside is reachable. Each connection is relayed byte for byte to the
Unix socket that the worker's :mod:`.api_proxy` listens on; the relay adds nothing (the
token is added on the other side). A sandbox of a type with egress runs a second forwarder,
on ``EGRESS_PORT``, to the worker's egress proxy (:mod:`.egress_proxy`): its
``HTTPS_PROXY``/``HTTP_PROXY``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import threading

API_PORT = 8417
SOCKET_PATH = "/run/armillary/api.sock"
EGRESS_PORT = 8418
EGRESS_SOCKET_PATH = "/run/armillary/egress.sock"


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


class _Relay(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        client: socket.socket = self.request
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
            try:
                upstream.connect(self.server.socket_path)
            except OSError:
                return
            back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
            back.start()
            _pipe(client, upstream)
            back.join()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    socket_path = SOCKET_PATH


def start(close: tuple[int, ...] = (), port: int = API_PORT, socket_path: str = SOCKET_PATH) -> int:
    """Fork a forwarder from ``port`` (0: any free one) to ``socket_path`` (a small process:
    before the launcher's heavy imports); returns the port. It lives as long as the sandbox's
    PID namespace."""
    server = _Server(("127.0.0.1", port), _Relay)
    server.socket_path = socket_path
    bound = int(server.server_address[1])
    if os.fork():
        server.server_close()
        return bound
    try:  # pragma: no cover - the forked forwarder
        for fd in close:  # the launcher's control socket is not its business
            with contextlib.suppress(OSError):
                os.close(fd)
        server.serve_forever()
    finally:  # pragma: no cover
        os._exit(0)
