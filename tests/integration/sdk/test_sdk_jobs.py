"""``client.jobs`` against the platform served on a loopback port (real HTTP).

No executor runs here: jobs stay queued until cancelled, which is all these tests need. Task
logs are checked against a stand-in transport (the request's shape, streamed content) and
against the server (tasks that never ran: empty logs, follow ends, 404s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from tests.integration.sdk.test_sdk_datasets import Account, StartServer, provision, start_server

from armillary.sdk import ArmillaryError, Client
from armillary.sdk.types import JobDetail

__all__ = ["start_server"]  # a fixture, used by name

SPEC: dict[str, Any] = {
    "name": "nightly",
    "parameters": {"seconds": 30, "label": "x", "tags": []},
    "tasks": [
        {"name": "warm", "type": "sleep", "params": {"seconds": "${params.seconds}"}},
        {"name": "report", "type": "noop", "needs": ["warm"]},
    ],
}


def apply(client: Client, project: str, spec: dict[str, Any] = SPEC) -> None:
    client.request("POST", f"/api/v1/projects/{project}/workflows", json=spec).close()


@pytest.fixture
def account(start_server: StartServer) -> Account:
    return provision(start_server())


@pytest.fixture
def client(account: Account) -> Iterator[Client]:
    with Client(account.url, account.token) as signed_in:
        apply(signed_in, account.project)
        yield signed_in


def test_run_records_version_parameters_trigger_and_tasks(client: Client, account: Account) -> None:
    job = client.jobs.run(account.project, "nightly", {"seconds": 5})

    assert job["workflow"] == "nightly"
    assert job["version"] == 1
    assert job["status"] == "queued"
    assert job["trigger"] == "api"
    assert job["parameters"] == {"seconds": 5, "label": "x", "tags": []}
    assert [(t["name"], t["status"]) for t in job["tasks"]] == [
        ("warm", "pending"),
        ("report", "pending"),
    ]
    assert client.jobs.get(job["id"]) == job

    from_cli = client.jobs.run(account.project, "nightly", trigger="cli")
    assert from_cli["trigger"] == "cli"
    assert from_cli["parameters"] == {"seconds": 30, "label": "x", "tags": []}


def test_idempotency_key_returns_the_same_job(client: Client, account: Account) -> None:
    first = client.jobs.run(account.project, "nightly", idempotency_key="nightly-2025-01-31")
    again = client.jobs.run(account.project, "nightly", idempotency_key="nightly-2025-01-31")
    other = client.jobs.run(account.project, "nightly", idempotency_key="nightly-2025-02-01")

    assert again["id"] == first["id"]
    assert other["id"] != first["id"]


def test_list_filters_and_pages(client: Client, account: Account) -> None:
    before = datetime.now(UTC) - timedelta(minutes=1)
    apply(client, account.project, {**SPEC, "name": "weekly"})
    nightly = [client.jobs.run(account.project, "nightly") for _ in range(3)]
    weekly = client.jobs.run(account.project, "weekly", trigger="cli")
    client.jobs.cancel(nightly[0]["id"])

    everything = client.jobs.list(account.project)
    assert everything["total"] == 4
    # Newest first.
    assert [j["id"] for j in everything["items"]] == [
        weekly["id"],
        *(j["id"] for j in reversed(nightly)),
    ]
    assert "tasks" not in everything["items"][0]

    def ids(**filters: Any) -> list[str]:
        return [j["id"] for j in client.jobs.list(account.project, **filters)["items"]]

    assert ids(workflow="weekly") == [weekly["id"]]
    assert ids(trigger="cli") == [weekly["id"]]
    assert ids(status="cancelled") == [nightly[0]["id"]]
    assert len(ids(status="queued", workflow="nightly")) == 2
    assert len(ids(since=before)) == 4
    assert ids(until=before) == []
    assert len(ids(since=before.isoformat(), until=datetime.now(UTC) + timedelta(hours=1))) == 4

    page = client.jobs.list(account.project, limit=2, offset=1)
    assert (page["total"], page["limit"], page["offset"]) == (4, 2, 1)
    assert [j["id"] for j in page["items"]] == [nightly[2]["id"], nightly[1]["id"]]

    with pytest.raises(ArmillaryError) as bad:
        client.jobs.list(account.project, status="sleeping")
    assert bad.value.status == 422


def test_cancel_then_wait(client: Client, account: Account) -> None:
    job = client.jobs.run(account.project, "nightly")

    cancelled = client.jobs.cancel(job["id"])
    assert cancelled["status"] == "cancelled"
    assert {t["status"] for t in cancelled["tasks"]} == {"cancelled"}
    assert cancelled["finished_at"] is not None
    with pytest.raises(ArmillaryError) as again:
        client.jobs.cancel(job["id"])
    assert again.value.status == 409

    # Already finished: no polling.
    started = time.monotonic()
    assert client.jobs.wait(job["id"], poll_interval=10)["status"] == "cancelled"
    assert time.monotonic() - started < 5


def test_wait_polls_until_the_job_ends(client: Client, account: Account) -> None:
    job = client.jobs.run(account.project, "nightly")
    seen: list[str] = []

    def cancel_soon() -> None:
        time.sleep(0.5)
        with Client(account.url, account.token) as other:
            other.jobs.cancel(job["id"])

    thread = threading.Thread(target=cancel_soon)
    thread.start()
    try:
        finished = client.jobs.wait(
            job["id"], poll_interval=0.1, timeout=30, on_update=lambda j: seen.append(j["status"])
        )
    finally:
        thread.join()

    assert finished["status"] == "cancelled"
    assert seen[0] == "queued"
    assert seen[-1] == "cancelled"
    assert len(seen) >= 2


def test_wait_times_out(client: Client, account: Account) -> None:
    job = client.jobs.run(account.project, "nightly")
    with pytest.raises(TimeoutError, match="still queued"):
        client.jobs.wait(job["id"], poll_interval=0.05, timeout=0.3)


def test_errors_carry_the_problem(client: Client, account: Account) -> None:
    with pytest.raises(ArmillaryError) as unknown_workflow:
        client.jobs.run(account.project, "no-such-workflow")
    assert unknown_workflow.value.status == 404
    assert unknown_workflow.value.title

    with pytest.raises(ArmillaryError) as unknown_parameter:
        client.jobs.run(account.project, "nightly", {"nope": 1})
    assert unknown_parameter.value.status == 422

    for job_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        with pytest.raises(ArmillaryError) as unknown_job:
            client.jobs.get(job_id)
        assert unknown_job.value.status == 404

    # Not a member: the job of another project does not exist for this caller.
    job = client.jobs.run(account.project, "nightly")
    stranger = provision(account.url)
    with Client(stranger.url, stranger.token) as outsider:
        with pytest.raises(ArmillaryError) as hidden:
            outsider.jobs.get(job["id"])
        assert hidden.value.status == 404
        with pytest.raises(ArmillaryError) as not_cancelled:
            outsider.jobs.cancel(job["id"])
        assert not_cancelled.value.status == 404
    assert client.jobs.get(job["id"])["status"] == "queued"


# -- task logs -------------------------------------------------------------------------------


class LogServer:
    """A stand-in transport for the logs endpoint: records requests, answers in chunks."""

    def __init__(self, chunks: list[bytes], status: int = 200) -> None:
        self.chunks = chunks
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status != 200:
            return httpx.Response(
                self.status,
                json={"type": "about:blank", "title": "Not Found", "detail": "No such task"},
                headers={"Content-Type": "application/problem+json"},
            )
        return httpx.Response(
            200,
            content=iter(self.chunks),
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )


def test_logs_request_and_text() -> None:
    server = LogServer([b"epoch 1\n", "loss 0.5 \u2713\n".encode()])
    with Client("http://armillary.test", "t", transport=httpx.MockTransport(server)) as client:
        text = client.jobs.logs("j-1", "train step")
        latest = server.requests[-1]
        assert text == "epoch 1\nloss 0.5 \u2713\n"
        assert latest.method == "GET"
        assert latest.url.raw_path == b"/api/v1/jobs/j-1/tasks/train%20step/logs?follow=false"
        assert latest.headers["Authorization"] == "Bearer t"

        client.jobs.logs("j-1", "train", attempt=2)
        assert server.requests[-1].url.params["attempt"] == "2"


def test_follow_logs_streams_chunks_without_a_read_timeout() -> None:
    chunks = [b"first\n", b"second\n", b"third\n"]
    server = LogServer(chunks)
    with Client("http://armillary.test", "t", transport=httpx.MockTransport(server)) as client:
        stream = client.jobs.follow_logs("j-1", "train", attempt=3)
        assert server.requests == []  # sent when iteration starts
        received = list(stream)
        request = server.requests[-1]

    assert "".join(received) == "first\nsecond\nthird\n"
    assert dict(request.url.params) == {"follow": "true", "attempt": "3"}
    timeout = request.extensions["timeout"]
    assert timeout["read"] is None
    assert timeout["connect"] == 10.0


def test_logs_errors_are_problems() -> None:
    server = LogServer([], status=404)
    with Client("http://armillary.test", "t", transport=httpx.MockTransport(server)) as client:
        with pytest.raises(ArmillaryError) as plain:
            client.jobs.logs("j-1", "train")
        assert (plain.value.status, plain.value.detail) == (404, "No such task")
        with pytest.raises(ArmillaryError) as followed:
            list(client.jobs.follow_logs("j-1", "train"))
        assert followed.value.status == 404


def test_logs_from_the_server(client: Client, account: Account) -> None:
    job: JobDetail = client.jobs.run(account.project, "nightly")
    client.jobs.cancel(job["id"])

    # The task never ran: no output, and following ends at once since the attempt is over.
    assert client.jobs.logs(job["id"], "warm") == ""
    followed: list[str] = []
    # A thread, so that a stream that never ends fails the test instead of stalling the run.
    thread = threading.Thread(
        target=lambda: followed.extend(client.jobs.follow_logs(job["id"], "warm")), daemon=True
    )
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert "".join(followed) == ""

    with pytest.raises(ArmillaryError) as no_attempt:
        client.jobs.logs(job["id"], "warm", attempt=3)
    assert no_attempt.value.status == 404
    with pytest.raises(ArmillaryError) as no_task:
        client.jobs.logs(job["id"], "no-such-task")
    assert (no_task.value.status, no_task.value.detail) == (404, "Task not found in this job")

    stranger = provision(account.url)
    with Client(stranger.url, stranger.token) as outsider, pytest.raises(ArmillaryError) as hidden:
        outsider.jobs.logs(job["id"], "warm")
    assert hidden.value.status == 404
