"""Jobs: start a workflow, list a project's history, inspect, cancel, wait, read task logs."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import httpx

from .types import JobDetail, JobPage

if TYPE_CHECKING:
    from .client import Client

#: Job statuses after which nothing changes any more.
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

# A followed log stays open, silent, for as long as the task runs without printing.
_FOLLOW_TIMEOUT = httpx.Timeout(None, connect=10.0)


def _segment(value: str) -> str:
    # Names and ids are path segments: a "/" or "%" in one must not change the route.
    return quote(str(value), safe="")


def _instant(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


class Jobs:
    """``client.jobs``: the jobs API of a :class:`~armillary.sdk.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _job(self, job_id: str) -> str:
        return f"/api/v1/jobs/{_segment(job_id)}"

    def run(
        self,
        project: str,
        workflow: str,
        parameters: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        *,
        trigger: str | None = None,
    ) -> JobDetail:
        """Start a job of the latest version of ``workflow`` in ``project`` (by slug).

        Parameters left out take the workflow's defaults. A repeated ``idempotency_key`` on
        the same workflow returns the job that key started instead of a new one. ``trigger``
        is sent as ``X-Armillary-Trigger`` (the CLI sends ``"cli"``; the server records
        anything else as ``"api"``). The job is returned queued; see :meth:`wait`.
        """
        headers: dict[str, str] = {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if trigger is not None:
            headers["X-Armillary-Trigger"] = trigger
        path = f"/api/v1/projects/{_segment(project)}/workflows/{_segment(workflow)}/jobs"
        response = self._client._send(
            "POST", path, json={"parameters": dict(parameters or {})}, headers=headers
        )
        return cast(JobDetail, response.json())

    def list(
        self,
        project: str,
        status: str | None = None,
        workflow: str | None = None,
        trigger: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        """One page of ``project``'s jobs, newest first, with the total that match.

        ``since`` (inclusive) and ``until`` (exclusive) bound the creation time; give
        timezone-aware datetimes or ISO 8601 strings with an offset. ``limit`` is at most 200.
        """
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        filters = {
            "status": status,
            "workflow": workflow,
            "trigger": trigger,
            "since": _instant(since),
            "until": _instant(until),
        }
        params.update({key: value for key, value in filters.items() if value is not None})
        path = f"/api/v1/projects/{_segment(project)}/jobs"
        return cast(JobPage, self._client.request("GET", path, params=params).json())

    def get(self, job_id: str) -> JobDetail:
        """A job with its version, timings and task runs (404 unless the caller is a member
        of its project)."""
        return cast(JobDetail, self._client.request("GET", self._job(job_id)).json())

    def cancel(self, job_id: str) -> JobDetail:
        """Cancel a job. Tasks not yet running are cancelled at once; a job with running
        tasks stays ``running`` with ``cancel_requested_at`` set until the executor stops
        them. Raises :class:`ArmillaryError` 409 when the job has already finished."""
        path = f"{self._job(job_id)}/cancel"
        return cast(JobDetail, self._client.request("POST", path).json())

    def wait(
        self,
        job_id: str,
        poll_interval: float = 0.5,
        timeout: float | None = None,
        *,
        on_update: Callable[[JobDetail], None] | None = None,
    ) -> JobDetail:
        """Poll the job every ``poll_interval`` seconds until it has succeeded, failed or been
        cancelled, and return it. ``on_update`` is called with the job after every poll.
        Raises :class:`TimeoutError` when ``timeout`` seconds pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if on_update is not None:
                on_update(job)
            if job["status"] in TERMINAL_STATUSES:
                return job
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"Job {job_id} still {job['status']} after {timeout} seconds"
                    )
                time.sleep(min(poll_interval, left))
            else:
                time.sleep(poll_interval)

    def _logs_request(
        self, job_id: str, task: str, attempt: int | None, *, follow: bool
    ) -> httpx.Response:
        params: dict[str, Any] = {"follow": "true" if follow else "false"}
        if attempt is not None:
            params["attempt"] = int(attempt)
        path = f"{self._job(job_id)}/tasks/{_segment(task)}/logs"
        return self._client._send(
            "GET",
            path,
            params=params,
            stream=follow,
            timeout=_FOLLOW_TIMEOUT if follow else None,
        )

    def logs(self, job_id: str, task: str, attempt: int | None = None) -> str:
        """The output a task's attempt has written so far (the latest attempt unless
        ``attempt`` is given)."""
        return self._logs_request(job_id, task, attempt, follow=False).text

    def follow_logs(self, job_id: str, task: str, attempt: int | None = None) -> Iterator[str]:
        """Text chunks of a task attempt's output as it is written: first what is there, then
        new output until the attempt ends (the latest attempt unless ``attempt`` is given).

        No read timeout applies; close the iterator (or leave the ``for`` loop) to stop early.
        The request is sent when iteration starts.
        """
        response = self._logs_request(job_id, task, attempt, follow=True)
        try:
            yield from response.iter_text()
        finally:
            response.close()
