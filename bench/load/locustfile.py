"""The load test's scenario: what a team does on the platform, through the gateway.

Runs in the Locust venv (bench/.venvs/load, made by bench/load/setup.sh), not in the project's
.venv: it imports only Locust and the standard library. bench/load/run.py starts the platform,
seeds it (bench/load/seed.py) and runs this file headless; the seed's JSON is named by
``LOAD_FIXTURE``.

Two kinds of simulated users:

- ``Scientist`` (a person, with an account of their own): signs in, lists projects, datasets,
  jobs and models, uploads a small CSV as a new dataset version, submits a one-task job,
  watches it until its task starts and follows its log until the task has run.
- ``ModelClient`` (an application with a deployment API key): single-row predictions, paced
  by ``LOAD_PREDICT_RATE`` per client per second. With the default mix (two clients per
  scientist, 4 predictions/s each) they make about 95 % of all requests.

Request names group the URLs by shape (``/projects/[p]/...``) so the report has one line per
request type; bench/load/slo.py holds the thresholds per name.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from locust import FastHttpUser, between, constant_throughput, task

API = "/api/v1"
FIXTURE: dict[str, Any] = json.loads(Path(os.environ["LOAD_FIXTURE"]).read_text())
PREDICT_RATE = float(os.environ.get("LOAD_PREDICT_RATE", "4"))
FINISHED = ("succeeded", "failed", "cancelled")
WATCH_POLLS = 60
_accounts = itertools.cycle(FIXTURE["accounts"])
_lock = threading.Lock()


def _segment(value: str) -> str:
    return quote(value, safe="")


def small_csv(rows: int = 20) -> bytes:
    """A CSV whose bytes differ every time, so each upload becomes a new version."""
    lines = ["id,amount,region"]
    lines += [f"{n},{random.uniform(0, 1000):.3f},{random.choice('NSEW')}" for n in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\n'.encode()
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Scientist(FastHttpUser):
    """A data scientist of the project: mostly reading, now and then writing."""

    weight = int(os.environ.get("LOAD_SCIENTIST_WEIGHT", "1"))
    wait_time = between(1, 3)

    def on_start(self) -> None:
        with _lock:
            self.account = next(_accounts)
        self.project = _segment(FIXTURE["project"])
        self.dataset = f"load-{uuid.uuid4().hex[:10]}"
        self.headers: dict[str, str] = {}
        self.sign_in()
        self.client.post(
            f"{API}/projects/{self.project}/datasets",
            json={"name": self.dataset, "description": "load test uploads"},
            headers=self.headers,
            name="POST /projects/[p]/datasets",
        )

    @task(1)
    def sign_in(self) -> None:
        body = urlencode({"username": self.account["email"], "password": self.account["password"]})
        with self.client.post(
            f"{API}/auth/token",
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            name="POST /auth/token",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"sign-in answered {response.status_code}")
                return
            token = response.json()["access_token"]
            self.headers = {"Authorization": f"Bearer {token}"}

    @task(3)
    def list_projects(self) -> None:
        self.client.get(f"{API}/projects", headers=self.headers, name="GET /projects")

    @task(3)
    def list_datasets(self) -> None:
        self.client.get(
            f"{API}/projects/{self.project}/datasets",
            headers=self.headers,
            name="GET /projects/[p]/datasets",
        )

    @task(3)
    def list_jobs(self) -> None:
        self.client.get(
            f"{API}/projects/{self.project}/jobs?limit=20",
            headers=self.headers,
            name="GET /projects/[p]/jobs",
        )

    @task(2)
    def list_models(self) -> None:
        self.client.get(
            f"{API}/projects/{self.project}/models",
            headers=self.headers,
            name="GET /projects/[p]/models",
        )

    @task(1)
    def upload_dataset(self) -> None:
        body, content_type = multipart({"format": "csv"}, "sample.csv", small_csv())
        self.client.post(
            f"{API}/projects/{self.project}/datasets/{self.dataset}/versions",
            data=body,
            headers={**self.headers, "Content-Type": content_type},
            name="POST /projects/[p]/datasets/[d]/versions",
        )

    @task(1)
    def submit_and_follow(self) -> None:
        workflow = _segment(FIXTURE["workflow"])
        with self.client.post(
            f"{API}/projects/{self.project}/workflows/{workflow}/jobs",
            json={"parameters": {}},
            headers=self.headers,
            name="POST /projects/[p]/workflows/[w]/jobs",
            catch_response=True,
        ) as response:
            if not response.ok:
                response.failure(f"job submission answered {response.status_code}")
                return
            job = response.json()["id"]
        # As `armillary jobs run` does: watch the job until its task has started (the wait is
        # reported as "JOB queued -> started", a failure when it did not start in time)...
        submitted = time.perf_counter()
        started = False
        for _ in range(WATCH_POLLS):
            answer = self.client.get(
                f"{API}/jobs/{job}", headers=self.headers, name="GET /jobs/[j]"
            )
            if not answer.ok:
                return
            detail = answer.json()
            if detail["status"] in FINISHED or detail["tasks"][0]["attempt"] > 0:
                started = True
                break
            time.sleep(1)
        self.environment.events.request.fire(
            request_type="JOB",
            name="queued -> started",
            response_time=(time.perf_counter() - submitted) * 1000,
            response_length=0,
            exception=None if started else RuntimeError(f"not started in {WATCH_POLLS} s"),
            context={},
        )
        if not started:
            return
        # ...then follow its log: the response stays open until the attempt has ended.
        with self.client.get(
            f"{API}/jobs/{job}/tasks/{_segment(FIXTURE['task'])}/logs?follow=true",
            headers=self.headers,
            name="GET /jobs/[j]/tasks/[t]/logs?follow",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"log follow answered {response.status_code}")
            elif FIXTURE["log_marker"] not in response.text:
                response.failure("the followed log lacks the task's output")


class ModelClient(FastHttpUser):
    """An application calling the deployment with its API key."""

    weight = int(os.environ.get("LOAD_CLIENT_WEIGHT", "2"))
    wait_time = constant_throughput(PREDICT_RATE)

    def on_start(self) -> None:
        project = _segment(FIXTURE["project"])
        deployment = _segment(FIXTURE["deployment"])
        self.path = f"{API}/projects/{project}/deployments/{deployment}/predict"
        self.headers = {"X-API-Key": FIXTURE["api_key"]}

    @task
    def predict(self) -> None:
        row = random.choice(FIXTURE["instances"])
        with self.client.post(
            self.path,
            json={"instances": [row], "key": uuid.uuid4().hex},
            headers=self.headers,
            name="POST /projects/[p]/deployments/[d]/predict",
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"predict answered {response.status_code}")
            elif not response.json().get("predictions"):
                response.failure("no prediction in the answer")
