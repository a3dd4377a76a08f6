"""The README's quickstart calls work as written: its shell blocks are taken from the README
and run with bash and curl against a platform on a loopback port (the only change: the
platform's URL). Covered: signing in and making a project, the CLI upload, the raw-API upload
(the dataset is created first; an upload to a missing dataset is a 404 problem), and serving
(predict, then feedback with the documented `prediction_id` and `actual`).

The training blocks need workers and minutes; the model they would register is uploaded here
through the API instead, under the names the serving block uses."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from tests.integration.docs.readme_blocks import README, Block, Call, Shell, bash_blocks, commands
from tests.integration.docs.readme_blocks import block_with as _block_with
from tests.integration.sdk.test_sdk_datasets import StartServer, start_server

__all__ = ["start_server"]  # a fixture, used by name

BLOCKS = bash_blocks(README.read_text(encoding="utf-8"))
SECTION = "Quickstart"
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def block_with(marker: str) -> Block:
    found = _block_with(marker, BLOCKS)
    assert found.section == SECTION, (marker, found.section)
    return found


SIGN_IN = block_with("$API/users")
CLI_UPLOAD = block_with("datasets upload flowers.csv")
RAW_UPLOAD = block_with("flowers-raw")
SERVING = block_with("/feedback")


def _admin() -> tuple[str, str]:
    """The admin the sign-in block signs in as; the password is the one `make run` was
    started with, a few lines above."""
    email = re.search(r"-d username=(\S+)", SIGN_IN.code)
    password = re.search(r"-d password='([^']+)'", SIGN_IN.code)
    assert email, SIGN_IN.code
    assert password, SIGN_IN.code
    assert f"ARMILLARY_ADMIN_PASSWORD='{password[1]}' make run" in README.read_text()
    return email[1], password[1]


@functools.cache
def _iris_model() -> bytes:
    data = load_iris()
    labels = data.target_names[data.target].astype(str)
    return bytes(skops.io.dumps(LogisticRegression(max_iter=1000).fit(data.data, labels)))


def _register_iris(url: str, token: str, project: str, model: str, alias: str) -> None:
    """What the README's training blocks leave behind: a model version with its signature and
    an alias on it."""
    signature = {
        "inputs": [{"name": name, "dtype": "Float64"} for name in IRIS],
        "target": {"name": "species", "dtype": "String"},
        "problem": "classification",
        "classes": ["setosa", "versicolor", "virginica"],
    }
    models = f"{url}/api/v1/projects/{project}/models"
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        created = http.post(models, json={"name": model})
        assert created.status_code == 201, created.text
        uploaded = http.post(
            f"{models}/{model}/versions/upload",
            files={"file": ("model.skops", _iris_model(), "application/octet-stream")},
            data={"signature": json.dumps(signature)},
        )
        assert uploaded.status_code == 201, uploaded.text
        aliased = http.put(
            f"{models}/{model}/aliases/{alias}", json={"version": 1, "reason": "README test"}
        )
        assert aliased.status_code == 200, aliased.text


def _ok(calls: list[Call]) -> None:
    for call in calls:
        assert call.status < 400, (call.method, call.url, call.status, call.body)


def _problem(call: Call, status: int) -> dict[str, Any]:
    assert call.status == status, (call.url, call.status, call.body)
    assert call.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = call.json()
    assert body["status"] == status
    return body


@pytest.fixture
def shell(start_server: StartServer, tmp_path: Path) -> Shell:
    email, password = _admin()
    url = start_server(admin_email=email, admin_password=password)
    workdir = tmp_path / "work"
    workdir.mkdir()
    return Shell(workdir, url)


def test_the_quickstart_blocks_work_as_written(shell: Shell) -> None:
    # Sign in, make Ada and her project `churn`.
    state = '\nprintf \'%s\\n\' "$API" "$ADA" > .readme-state\n'
    _, calls = shell.run(SIGN_IN.code + state)
    _ok(calls)
    assert [(c.method, c.status) for c in calls][1:4] == [
        ("POST", 201),  # Ada
        ("POST", 200),  # her token
        ("POST", 201),  # the project
    ]
    api, ada = (shell.workdir / ".readme-state").read_text().split()
    variables = {"API": api, "ADA": ada}
    ada_password = re.search(r"password=(\S+) \$API/auth/token", SIGN_IN.code)
    assert ada_password, SIGN_IN.code

    # The CLI upload: login reads the password from stdin (not a terminal), then upload,
    # show and download.
    shell.run(CLI_UPLOAD.code, stdin=ada_password[1] + "\n", **variables)
    [copy] = re.findall(r"--to (\S+)", CLI_UPLOAD.code)
    assert (shell.workdir / copy).read_bytes() == (shell.workdir / "flowers.csv").read_bytes()

    # The raw API: the prose says the dataset is created first, and what a missing one gets.
    assert "create the dataset first" in RAW_UPLOAD.before
    assert "answered 404" in RAW_UPLOAD.before
    _, calls = shell.run(RAW_UPLOAD.code, **variables)
    created, uploaded = calls
    assert (created.method, created.status) == ("POST", 201)
    assert created.url.endswith("/datasets")
    assert (uploaded.method, uploaded.status) == ("POST", 201)
    assert uploaded.json()["number"] == 1
    [upload] = [line for line in commands(RAW_UPLOAD.code) if "-F file=@" in line]
    _, (again,) = shell.run(upload, **variables)
    assert again.status == 200  # "the same bytes again: 200"
    assert again.json()["number"] == 1
    _, (missing,) = shell.run(upload.replace("flowers-raw", "never-created"), **variables)
    _problem(missing, 404)

    # Serving: deploy the model the training blocks register, predict, send feedback.
    created_deployment = re.search(
        r"\$API/projects/churn/deployments -d '(.+?)'", " ".join(commands(SERVING.code))
    )
    assert created_deployment, SERVING.code
    deployment = json.loads(created_deployment[1])
    [variant] = deployment["variants"]
    _register_iris(api.removesuffix("/api/v1"), ada, "churn", variant["model"], variant["alias"])
    _, calls = shell.run(SERVING.code, **variables)
    _ok(calls)
    by_path = {c.url.rsplit("/", 1)[-1]: c for c in calls}
    predicted = by_path["predict"].json()
    assert predicted["predictions"] == ["setosa"]
    feedback = by_path["feedback"]
    assert set(feedback.sent) == {"prediction_id", "actual"}  # the documented body
    assert feedback.sent["prediction_id"] == predicted["prediction_id"]
    assert feedback.json() | {"results": None} == {"recorded": 1, "rejected": 0, "results": None}
    assert by_path["analysis"].status == 200
