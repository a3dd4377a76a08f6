"""One uvicorn worker serving the embedded platform, with tracing set up from the
environment exactly as `armillary up` does (``kit.tracing.setup`` before the app is built).

    python bench/tracing/server.py PORT
"""

from __future__ import annotations

import sys

import uvicorn

from armillary.app import create_app
from armillary.kit import tracing


def main(port: int) -> None:
    tracing.setup("platform")
    app = create_app()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        server_header=False,
    )


if __name__ == "__main__":
    main(int(sys.argv[1]))
