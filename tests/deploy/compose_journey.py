"""The API journey through the gateway of the compose stack. tests/deploy/test_containers.py
runs it in the gateway's container, inside the stack's network namespace: sign in, a project
and a dataset, an MLflow experiment in the tracking service (its REST API under /mlflow), a
job whose python task runs in a worker's bubblewrap sandbox, then train, register and deploy
a model, and predict; the web console (its own container behind the gateway) shows the job's
page to the user signed in with its form. `after-restart` proves the same things are still
there after `docker compose down` and `up` (the volumes): the sign-in, the dataset's bytes,
the experiment, the job, the model and a prediction from the deployment.

    docker compose exec -T gateway python3 - first|after-restart URL EMAIL PASSWORD \
        < compose_journey.py
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import httpx

PROJECT = "compose"
BASE = f"/api/v1/projects/{PROJECT}"
# The project's MLflow tracking URI is /mlflow/<project> (ADR 0037).
MLFLOW = f"/mlflow/{PROJECT}/api/2.0/mlflow"
EXPERIMENT = "journey"
ROWS = 80
CSV = "x1,x2,label\n" + "".join(
    f"{i % 10},{(i * 7) % 13},{'big' if i % 10 + (i * 7) % 13 > 10 else 'small'}\n"
    for i in range(ROWS)
)
SPEC = {
    "name": "journey",
    "tasks": [
        {"name": "load", "type": "ingest", "params": {"dataset": "points"}},
        {
            "name": "sandboxed",
            "type": "python",
            "params": {
                "source": (
                    "import os, socket\n"
                    "def main():\n"
                    "    try:\n"
                    "        socket.create_connection(('127.0.0.1', 8000), timeout=2)\n"
                    "        network = True\n"
                    "    except OSError:\n"
                    "        network = False\n"
                    "    print('in the sandbox')\n"
                    "    return {'pid': os.getpid(), 'network': network}\n"
                ),
            },
            "outputs": ["pid", "network"],
        },
        {
            "name": "train",
            "type": "train",
            "needs": ["load", "sandboxed"],
            "params": {
                "input": "load",
                "target": "label",
                "estimator": "LogisticRegression",
                "hyperparameters": {"max_iter": 500},
                "validation": {"method": "holdout", "test_size": 0.25, "seed": 7},
            },
        },
        {
            "name": "evaluate",
            "type": "evaluate",
            "needs": ["train"],
            "params": {"model": "train", "thresholds": {"accuracy": {"min": 0.5}}},
        },
        {
            "name": "register",
            "type": "register",
            "needs": ["train", "evaluate"],
            "params": {"model": "train", "evaluation": "evaluate", "name": "points",
                       "alias": "champion"},
        },
        {
            "name": "deploy",
            "type": "deploy",
            "needs": ["register"],
            "params": {"registration": "register", "deployment": "points", "variant": "champion",
                       "weight": 100},
        },
    ],
}  # fmt: skip


def wait(check: Any, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
            if found:
                return found
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(0.5)


def sign_in(c: httpx.Client, email: str, password: str) -> dict[str, str]:
    def token() -> str | None:
        r = c.post("/api/v1/auth/token", data={"username": email, "password": password})
        return str(r.json()["access_token"]) if r.status_code == 200 else None

    return {"Authorization": f"Bearer {wait(token, 180, 'no sign-in through the gateway')}"}


def predict(c: httpx.Client, h: dict[str, str]) -> dict[str, Any]:
    def answer() -> dict[str, Any] | None:
        r = c.post(
            f"{BASE}/deployments/points/predict",
            json={"instances": [{"x1": 9, "x2": 12}]},
            headers=h,
        )
        return r.json() if r.status_code == 200 else None

    found: dict[str, Any] = wait(answer, 90, "the deployment never predicted")
    return found


def experiment_by_name(c: httpx.Client, h: dict[str, str]) -> str:
    r = c.get(
        f"{MLFLOW}/experiments/get-by-name", params={"experiment_name": EXPERIMENT}, headers=h
    )
    assert r.status_code == 200, r.text
    return str(r.json()["experiment"]["experiment_id"])


def create_experiment(c: httpx.Client, h: dict[str, str]) -> str:
    """An experiment made through the gateway by the tracking service, with the user's token."""
    r = c.post(f"{MLFLOW}/experiments/create", json={"name": EXPERIMENT}, headers=h)
    # MLflow's answer to a re-run on the same volumes (the test itself starts from empty ones).
    if r.status_code == 400 and r.json().get("error_code") == "RESOURCE_ALREADY_EXISTS":
        return experiment_by_name(c, h)
    assert r.status_code == 200, r.text
    experiment_id = str(r.json()["experiment_id"])
    assert experiment_by_name(c, h) == experiment_id
    return experiment_id


def first(c: httpx.Client, h: dict[str, str]) -> dict[str, Any]:
    # 409: a re-run on the same volumes (the test itself starts from empty ones).
    r = c.post("/api/v1/projects", json={"slug": PROJECT, "name": "Compose"}, headers=h)
    assert r.status_code in (201, 409), r.text
    experiment = create_experiment(c, h)
    r = c.post(f"{BASE}/datasets", json={"name": "points"}, headers=h)
    assert r.status_code in (201, 409), r.text
    r = c.post(
        f"{BASE}/datasets/points/versions",
        files={"file": ("points.csv", CSV.encode(), "text/csv")},
        data={"format": "csv"},
        headers=h,
    )
    assert r.status_code in (200, 201), r.text  # 200: the same bytes again
    r = c.post(f"{BASE}/workflows", json=SPEC, headers=h)
    assert r.status_code in (200, 201), r.text
    job = c.post(f"{BASE}/workflows/journey/jobs", json={}, headers=h)
    assert job.status_code == 201, job.text
    job_id = job.json()["id"]

    def finished() -> dict[str, Any] | None:
        found: dict[str, Any] = c.get(f"/api/v1/jobs/{job_id}", headers=h).json()
        return found if found["status"] in ("succeeded", "failed", "cancelled") else None

    done = wait(finished, 300, "the job never finished")
    tasks = {t["name"]: t for t in done["tasks"]}
    assert done["status"] == "succeeded", {n: t.get("error") for n, t in tasks.items()}
    log = c.get(f"/api/v1/jobs/{job_id}/tasks/sandboxed/logs", headers=h).text
    assert "in the sandbox" in log, log
    return {
        "experiment": experiment,
        "job": job_id,
        "sandbox": tasks["sandboxed"]["outputs"],
        "prediction": predict(c, h),
    }


def console_shows_the_job(url: str, email: str, password: str, job_id: str) -> bool:
    """Signs in with the console's form (a cookie session, no bearer token) and opens the
    job's page, which the console renders from the API through the gateway."""
    page = f"/ui/projects/{PROJECT}/jobs/{job_id}"
    with httpx.Client(base_url=url, timeout=60, follow_redirects=True) as browser:

        def sign_in_page() -> str | None:
            r = browser.get("/ui/login")
            found = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
            return found.group(1) if r.status_code == 200 and found else None

        csrf = wait(sign_in_page, 120, "the console's sign-in page never answered")
        r = browser.post(
            "/ui/login",
            data={"email": email, "password": password, "next": page, "csrf_token": csrf},
            headers={"Origin": url},
        )
        assert r.status_code == 200, r.text
        assert str(r.url).endswith(page), r.url
        return job_id in r.text and "sandboxed" in r.text


def after_restart(c: httpx.Client, h: dict[str, str]) -> dict[str, Any]:
    jobs = c.get(f"{BASE}/jobs", headers=h)
    assert jobs.status_code == 200, jobs.text
    versions = c.get(f"{BASE}/datasets/points/versions", headers=h)
    assert versions.status_code == 200, versions.text
    number = versions.json()["items"][0]["number"]
    content = c.get(f"{BASE}/datasets/points/versions/{number}/content", headers=h)
    assert content.status_code == 200, content.text
    models = c.get(f"{BASE}/models", headers=h)
    assert models.status_code == 200, models.text
    return {
        "jobs": [j["id"] for j in jobs.json()["items"]],
        "dataset_intact": content.content.replace(b"\r\n", b"\n") == CSV.encode(),
        "experiment": experiment_by_name(c, h),
        "models": [m["name"] for m in models.json()["items"]],
        "prediction": predict(c, h),
    }


def main() -> None:
    step, url, email, password = sys.argv[1:5]
    with httpx.Client(base_url=url, timeout=300, follow_redirects=True) as c:
        h = sign_in(c, email, password)
        result = first(c, h) if step == "first" else after_restart(c, h)
    if step == "first":
        result["console"] = console_shows_the_job(url, email, password, str(result["job"]))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
