"""The images' HEALTHCHECK: exit 0 when this container's process answers over HTTP.

The python slim base has no curl or wget, so the standard library does it. The URL is
ARMILLARY_HEALTHCHECK_URL (or the first argument); without one, the API image tries the six
services' default ports (8101-8106) and the gateway's stats listener (9902): a container runs
one of them, whichever it is.
"""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_URLS = [
    *(f"http://127.0.0.1:{port}/healthz" for port in (8101, 8102, 8103, 8104, 8105, 8106)),
    "http://127.0.0.1:9902/ready",  # Envoy, `armillary gateway`
]
TIMEOUT_SECONDS = 3


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
            return 200 <= response.status < 300
    except OSError:
        return False


def main() -> int:
    url = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("ARMILLARY_HEALTHCHECK_URL")
    urls = [url] if url else DEFAULT_URLS
    return 0 if any(answers(candidate) for candidate in urls) else 1


if __name__ == "__main__":
    sys.exit(main())
