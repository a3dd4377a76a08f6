"""``log_metrics`` only enqueues: with the network stuck, a training loop's calls still return,
and the points reach the server later, in order, from the SDK's own thread."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from armillary import tracking
from armillary.tracking import sdk

RUN_ID = "ab" * 16


class StuckServer:
    """Answers runs/create and runs/update at once; holds every log-batch until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batch_arrived = threading.Event()
        self.points: list[tuple[str, int, float]] = []
        self.batch_threads: set[str] = set()
        self.updates: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        endpoint = request.url.path.split("/api/2.0/mlflow/")[-1]
        body = json.loads(request.content or b"{}")
        if endpoint == "runs/create":
            info = {
                "run_id": RUN_ID,
                "run_name": "r",
                "experiment_id": "0",
                "artifact_uri": f"mlflow-artifacts:/0/{RUN_ID}/artifacts",
            }
            return httpx.Response(200, json={"run": {"info": info}})
        if endpoint == "runs/log-batch":
            self.batch_threads.add(threading.current_thread().name)
            self.batch_arrived.set()
            self.release.wait(30)
            self.points += [(m["key"], m["step"], m["value"]) for m in body["metrics"]]
            return httpx.Response(200, json={})
        if endpoint == "runs/update":
            self.updates.append(body)
            return httpx.Response(200, json={})
        return httpx.Response(404, json={"error_code": "ENDPOINT_NOT_FOUND"})


@pytest.fixture
def server() -> Iterator[StuckServer]:
    stuck = StuckServer()
    tracking.configure(
        url="http://tracking.test",
        project="p",
        token="t",
        transport=httpx.MockTransport(stuck.handle),
    )
    try:
        yield stuck
    finally:
        stuck.release.set()
        sdk._tracker.reset()


def test_log_metrics_returns_while_the_transport_is_blocked(server: StuckServer) -> None:
    run = tracking.start_run("r")
    tracking.log_metric("loss", 0.0, step=0)
    sdk._tracker.batcher().wake()
    assert server.batch_arrived.wait(10), "the background thread never sent the first batch"

    # The only sender is now stuck inside the transport. A loop that waited on it would hang,
    # so it runs in a thread of its own that must finish while the transport is still held.
    def training_loop() -> None:
        for step in range(1, 5_001):
            tracking.log_metrics({"loss": float(step), "acc": step / 5_000}, step=step)

    loop = threading.Thread(target=training_loop, name="training-loop")
    loop.start()
    loop.join(timeout=20)
    assert not loop.is_alive(), "log_metrics waited on the network"
    assert not server.release.is_set()
    assert len(server.points) == 0  # nothing got through yet: the calls only queued

    server.release.set()
    run.end()
    # Sent by the SDK's thread (and the run's end), never by the training loop's.
    assert "armillary-tracking" in server.batch_threads
    assert "training-loop" not in server.batch_threads
    losses = [(step, value) for key, step, value in server.points if key == "loss"]
    assert losses == [(s, float(s)) for s in range(5_001)]
    assert server.updates[-1]["status"] == "FINISHED"


def test_a_failed_send_is_raised_when_the_run_ends(server: StuckServer) -> None:
    server.release.set()

    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("runs/log-batch"):
            return httpx.Response(
                400, json={"error_code": "INVALID_PARAMETER_VALUE", "message": "too big"}
            )
        return server.handle(request)

    tracking.configure(
        url="http://tracking.test", project="p", token="t", transport=httpx.MockTransport(refuse)
    )
    run = tracking.start_run("r")
    tracking.log_metric("loss", 1.0)
    with pytest.raises(tracking.TrackingError, match="too big"):
        run.end()
    assert server.updates[-1]["status"] == "FINISHED"  # the run still ends
