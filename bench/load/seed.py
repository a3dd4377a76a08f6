"""The load test's set-up, through the public API of a running platform (project's .venv):
accounts for the simulated scientists, a project they edit, a model trained, registered and
deployed by a real workflow job (the quickstart's breast-cancer pipeline), a deployment API
key, and a one-task workflow for the scenario's job submissions. Writes what the locustfile
needs as JSON.

    .venv/bin/python bench/load/seed.py --url http://127.0.0.1:PORT --to fixture.json
    (admin credentials from ARMILLARY_ADMIN_EMAIL / ARMILLARY_ADMIN_PASSWORD)
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from armillary.cli import quickstart
from armillary.sdk import Client
from armillary.sdk.errors import ArmillaryError

PROJECT = "load"
WORKFLOW = "tick"
TASK = "say"
LOG_MARKER = "load-test tick"
SERVED_WITHIN_SECONDS = 180.0
TICK_SPEC = {
    "name": WORKFLOW,
    "description": "the load test's job submissions: one small sandboxed task",
    "tasks": [
        {
            "name": TASK,
            "type": "python",
            "params": {
                "source": (
                    "def main():\n"
                    "    for n in range(3):\n"
                    f"        print({LOG_MARKER!r}, n)\n"
                    "    return {'n': 3}\n"
                ),
            },
            "outputs": ["n"],
            "timeout_seconds": 120,
        }
    ],
}


def wait_ready(url: str, email: str, password: str, timeout: float = 600) -> None:
    """Until the gateway and identity answer a sign-in (the gateway listens after its first
    JWKS fetch; the services migrate and start meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.post(
                f"{url}/api/v1/auth/token",
                data={"username": email, "password": password},
                timeout=10,
            )
            if answer.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the platform at {url} did not answer a sign-in in {timeout:.0f} s")
        time.sleep(1)


def seed(url: str, email: str, password: str, accounts: int) -> dict[str, Any]:
    wait_ready(url, email, password)
    client = Client(url)
    client.login(email, password)
    api = "/api/v1"
    base = f"{api}/projects/{PROJECT}"
    client.request("POST", f"{api}/projects", json={"slug": PROJECT, "name": "Load test"})
    made = []
    for n in range(accounts):
        account = {"email": f"scientist-{n}@example.com", "password": secrets.token_urlsafe(18)}
        client.request(
            "POST",
            f"{api}/users",
            json={**account, "name": f"Scientist {n}", "role": "data_scientist"},
        )
        client.request("PUT", f"{base}/members/{account['email']}", json={"role": "editor"})
        made.append(account)
    # The model: the quickstart's pipeline (ingest, validate, train, evaluate, register,
    # deploy), run by a worker like any job.
    with tempfile.TemporaryDirectory(prefix="armillary-load-") as tmp:
        csv, held_out = quickstart.demo_data(Path(tmp))
        client.datasets.upload(PROJECT, quickstart.DATASET, csv, format="csv")
    client.request("POST", f"{base}/workflows", json=quickstart.workflow_spec())
    job = client.jobs.run(PROJECT, quickstart.WORKFLOW)
    job = client.jobs.wait(job["id"], timeout=600)
    if job["status"] != "succeeded":
        errors = {t["name"]: t["error"] for t in job["tasks"] if t["error"]}
        raise SystemExit(f"the training job {job['status']}: {errors}")
    client.request("POST", f"{base}/workflows", json=TICK_SPEC)
    deployment = quickstart.DEPLOYMENT
    key = client.request(
        "POST", f"{base}/deployments/{deployment}/keys", json={"name": "load-test"}
    ).json()["key"]
    instances = [{k: v for k, v in row.items() if k != quickstart.TARGET} for row in held_out]
    _wait_served(url, f"{base}/deployments/{deployment}/predict", key, instances[0])
    client.close()
    return {
        "project": PROJECT,
        "workflow": WORKFLOW,
        "task": TASK,
        "log_marker": LOG_MARKER,
        "deployment": deployment,
        "api_key": key,
        "accounts": made,
        "instances": instances,
        "training_job": job["id"],
    }


def _wait_served(url: str, path: str, key: str, row: dict[str, Any]) -> None:
    """Until the new deployment answers (it reaches the serving process by an event, and the
    first prediction loads the model)."""
    deadline = time.monotonic() + SERVED_WITHIN_SECONDS
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = httpx.post(
                url + path, json={"instances": [row]}, headers={"X-API-Key": key}, timeout=60
            )
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        else:
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:300]}"
        time.sleep(0.5)
    raise SystemExit(f"predict did not answer 200 in {SERVED_WITHIN_SECONDS:.0f} s: {last}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--to", type=Path, required=True)
    parser.add_argument("--accounts", type=int, default=10)
    args = parser.parse_args()
    email = os.environ.get("ARMILLARY_ADMIN_EMAIL", "admin@armillary.dev")
    try:
        fixture = seed(args.url, email, os.environ["ARMILLARY_ADMIN_PASSWORD"], args.accounts)
    except ArmillaryError as exc:
        raise SystemExit(f"seeding failed: {exc} {exc.body}") from exc
    args.to.write_text(json.dumps(fixture, indent=2))
    args.to.chmod(0o600)  # holds passwords and an API key


if __name__ == "__main__":
    main()
