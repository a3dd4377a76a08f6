"""The benchmark's OTLP/HTTP endpoint: a separate process that stores each posted export
as raw bytes and decodes nothing until asked for the span count, after the measurements.

    python bench/tracing/sink.py      (prints its port, then serves until SIGTERM)

Why not the test receiver (tests/integration/observability/otlp_receiver.py) in the bench
process, as before: that one decodes every export into Python objects as it arrives, on
the same 2 cores as the servers under test and wrk, although in production the collector
runs elsewhere. Measured, that decoding was small (20-27 us of CPU per span, about 0.5 s
per run), so this is for fairness rather than a large correction: the sink does the least
a receiver can (read the body, answer 200) at a lower priority (nice 10), so what the
`on` server is charged with is its own work: recording, scrubbing, encoding and posting the
spans. Its CPU time is reported beside the results.

``GET /count`` answers the number of spans received so far (decoding the stored bodies
then); ``GET /cpu`` answers this process's CPU seconds.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_EMPTY_RESPONSE = b""  # an empty ExportTraceServiceResponse encodes to no bytes
_bodies: list[tuple[bytes, bool]] = []
_lock = threading.Lock()


def count_spans(bodies: list[tuple[bytes, bool]]) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    spans = 0
    for body, gzipped in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(gzip.decompress(body) if gzipped else body)
        spans += sum(
            len(scope.spans)
            for resource in request.resource_spans
            for scope in resource.scope_spans
        )
    return spans


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector would

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        gzipped = self.headers.get("content-encoding") == "gzip"
        with _lock:
            _bodies.append((body, gzipped))
        self._answer(_EMPTY_RESPONSE, "application/x-protobuf")

    def do_GET(self) -> None:
        if self.path == "/count":
            with _lock:
                bodies = list(_bodies)
            self._answer(json.dumps({"spans": count_spans(bodies)}).encode(), "application/json")
        elif self.path == "/cpu":
            self._answer(json.dumps({"seconds": time.process_time()}).encode(), "application/json")
        else:
            self.send_error(404)

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    os.nice(10)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
