"""The ``register`` task: the registry request it builds from the upstream outputs, and the
calls it makes (model created if missing, version registered, alias set)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from armillary.contracts.registry import RegisterParams
from armillary.contracts.tasks import TaskContext
from armillary.registry import tasks
from armillary.registry.tasks import RegisterError, run_register, version_request

JOB = "11111111-1111-4111-8111-111111111111"


def _ref(name: str, task: str = "train") -> dict[str, str]:
    return {"job_id": JOB, "task": task, "name": name}


def train_outputs(**changes: Any) -> dict[str, Any]:
    outputs: dict[str, Any] = {
        "estimator": "LogisticRegression",
        "problem": "classification",
        "format": "skops",
        "artifacts": {
            "skops": _ref("model.skops"),
            "onnx": _ref("model.onnx"),
            "signature": _ref("signature.json"),
            "environment": _ref("environment.json"),
            "importances": None,
            "trials": None,
        },
        "metrics": {"f1": 0.8},
        "hyperparameters": {"C": 0.5},
        "signature": {
            "inputs": [{"name": "x", "dtype": "Float64"}],
            "target": {"name": "y", "dtype": "Int64"},
            "problem": "classification",
            "classes": [0, 1],
        },
        "rows": 10,
    }
    outputs.update(changes)
    return outputs


EVALUATE = {"metrics": {"f1": 0.75, "accuracy": 0.9}, "rows": 5, "passed": True, "thresholds": []}


def test_the_request_names_the_artifacts_and_prefixes_evaluation_metrics() -> None:
    params = RegisterParams(model="train", evaluation="evaluate", name="churn", tags={"a": "b"})
    body = version_request(params, {"train": train_outputs(), "evaluate": EVALUATE})
    assert body["source"] == {
        "task": "train",
        "artifacts": ["model.skops", "model.onnx", "signature.json", "environment.json"],
    }
    assert body["metrics"] == {"f1": 0.8, "eval_f1": 0.75, "eval_accuracy": 0.9}
    assert body["params"] == {"C": 0.5}
    assert (body["estimator"], body["problem"], body["format"]) == (
        "LogisticRegression",
        "classification",
        "skops",
    )
    assert body["signature"]["classes"] == [0, 1]
    assert body["evaluation_task"] == "evaluate"
    assert body["tags"] == {"a": "b"}


def test_the_model_task_must_be_a_direct_upstream_train_task() -> None:
    params = RegisterParams(model="train", name="churn")
    with pytest.raises(RegisterError, match="direct upstream"):
        version_request(params, {})
    with pytest.raises(ValueError):  # not TrainOutputs
        version_request(params, {"train": {"table": {}}})
    moved = train_outputs()
    moved["artifacts"]["skops"] = _ref("model.skops", task="other")
    with pytest.raises(RegisterError, match=r"expected train/model\.skops"):
        version_request(params, {"train": moved})


def test_run_register_registers_and_sets_the_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        calls.append((request.method, request.url.path, body))
        assert request.headers["authorization"] == "Bearer job-token"
        path = request.url.path
        if request.method == "GET" and path.endswith("/models/churn"):
            return httpx.Response(404, json={"title": "Not found", "status": 404, "detail": "x"})
        if request.method == "POST" and path.endswith("/models"):
            return httpx.Response(201, json={"name": "churn"})
        if request.method == "POST" and path.endswith("/versions"):
            return httpx.Response(201, json={"id": "v-id", "version": 4})
        if request.method == "PUT" and path.endswith("/aliases/challenger"):
            return httpx.Response(200, json={"alias": "challenger", "version": 4})
        return httpx.Response(500)

    monkeypatch.setattr(tasks, "_api_transport", httpx.MockTransport(handler))
    context = TaskContext(
        job_id=JOB,
        project_id="p1",
        task="register",
        attempt_id="a1",
        workdir=tmp_path,
        artifacts_dir=tmp_path,
        api_url="http://platform",
        _token="job-token",
    )
    outputs = run_register(
        {"model": "train", "name": "churn", "alias": "challenger"},
        {"train": train_outputs()},
        context,
    )
    assert outputs == {
        "model": "churn",
        "version": 4,
        "model_version_id": "v-id",
        "alias": "challenger",
    }
    assert [(m, p) for m, p, _ in calls] == [
        ("GET", "/api/v1/projects/p1/models/churn"),
        ("POST", "/api/v1/projects/p1/models"),
        ("POST", "/api/v1/projects/p1/models/churn/versions"),
        ("PUT", "/api/v1/projects/p1/models/churn/aliases/challenger"),
    ]
    assert calls[3][2]["version"] == 4
    assert JOB in calls[3][2]["reason"]
