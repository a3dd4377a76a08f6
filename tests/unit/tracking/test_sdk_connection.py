"""Where the tracking SDK connects: inside a task, the sandbox's API address and project with
no token (the worker's proxy adds it); outside, what ``armillary login`` stored, renewed once
on a 401 and written back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from armillary import tracking
from armillary.sdk.credentials import Credentials, load_credentials, save_credentials
from armillary.tracking import sdk

INFO = {
    "run_id": "cd" * 16,
    "run_name": "r",
    "experiment_id": "0",
    "artifact_uri": "mlflow-artifacts:/0/x/artifacts",
}


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "ARMILLARY_URL",
        "ARMILLARY_TOKEN",
        "ARMILLARY_PROJECT",
        "ARMILLARY_EXPERIMENT",
        "ARMILLARY_JOB_ID",
        "ARMILLARY_API_URL",
        "ARMILLARY_PROJECT_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ARMILLARY_CONFIG_DIR", str(tmp_path / "config"))
    yield
    sdk._tracker.reset()


def test_inside_a_task_it_uses_the_sandboxs_address_and_project_and_no_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project_id = str(uuid.uuid4())
    monkeypatch.setenv("ARMILLARY_JOB_ID", str(uuid.uuid4()))
    monkeypatch.setenv("ARMILLARY_API_URL", "http://127.0.0.1:8199")
    monkeypatch.setenv("ARMILLARY_PROJECT_ID", project_id)
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"run": {"info": INFO}})

    tracking.configure(transport=httpx.MockTransport(handle))
    tracking.start_run("in-a-task")
    assert str(seen[0].url) == (
        f"http://127.0.0.1:8199/mlflow/{project_id}/api/2.0/mlflow/runs/create"
    )
    assert "authorization" not in seen[0].headers


def test_outside_a_task_the_stored_login_is_renewed_once_and_written_back() -> None:
    save_credentials(
        Credentials(
            url="http://armillary.test",
            email="ds@example.com",
            access_token="expired",
            refresh_token="refresh-1",
            expires_at=None,
        )
    )
    refreshes: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/auth/refresh":
            refreshes.append(json.loads(request.content)["refresh_token"])
            tokens = {"access_token": "fresh", "refresh_token": "refresh-2", "expires_in": 900}
            return httpx.Response(200, json=tokens)
        if request.headers.get("authorization") != "Bearer fresh":
            return httpx.Response(401, json={"error_code": "UNAUTHENTICATED", "message": "no"})
        return httpx.Response(200, json={"run": {"info": INFO}})

    tracking.configure(project="churn", transport=httpx.MockTransport(handle))
    run = tracking.start_run("from-a-notebook")
    assert run.id == INFO["run_id"]
    tracking.set_tag("a", "b")
    assert refreshes == ["refresh-1"]  # once; later calls use the new token
    stored = load_credentials()
    assert stored is not None
    assert (stored.access_token, stored.refresh_token) == ("fresh", "refresh-2")


def test_without_a_project_or_a_login_it_says_what_to_do() -> None:
    tracking.configure(project="churn")
    with pytest.raises(tracking.TrackingError, match="armillary login"):
        tracking.start_run()
    tracking.configure(url="http://armillary.test", token="t")
    with pytest.raises(tracking.TrackingError, match="ARMILLARY_PROJECT"):
        tracking.start_run()
