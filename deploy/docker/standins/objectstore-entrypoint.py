"""The S3-compatible stand-in: moto's server on the port given as argument. moto keeps its
state in memory, so its recorder appends every request to MOTO_RECORDER_FILEPATH (on the
volume), and a start replays that file first: objects survive a restart of the stack."""

import os
import sys
import threading
import time
import urllib.request

from moto.server import ThreadedMotoServer


def post(port: int, path: str) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/moto-api/recorder/{path}", b"")
    urllib.request.urlopen(request, timeout=60).read()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=port, verbose=False)
    server.start()
    time.sleep(0.5)
    log = os.environ["MOTO_RECORDER_FILEPATH"]
    if os.path.exists(log) and os.path.getsize(log):
        post(port, "replay-recording")
    post(port, "start-recording")
    print(f"moto S3 stand-in on :{port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
