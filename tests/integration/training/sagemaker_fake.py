"""A small fake SageMaker on loopback: the JSON 1.1 protocol botocore speaks for ``sagemaker``
(``POST /`` with ``X-Amz-Target: SageMaker.<Operation>``), for the training job calls only.

moto marks a training job Completed at once; this fake walks each job through a script of
states instead, one state per ``DescribeTrainingJob``, so a test sees the statuses a real job
goes through, a failure with its reason, or a job that runs until it is stopped.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

State = dict[str, Any]  # TrainingJobStatus, SecondaryStatus and optional FailureReason

RUNNING: list[State] = [
    {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Starting"},
    {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Downloading"},
    {"TrainingJobStatus": "InProgress", "SecondaryStatus": "Training"},
]
COMPLETED: State = {"TrainingJobStatus": "Completed", "SecondaryStatus": "Completed"}


@dataclass
class FakeSageMaker:
    """Each job walks ``script``, one state per describe, and stays at its last state.

    ``on_complete(request)`` runs when a job first reaches ``Completed`` (to plant its model).
    """

    script: list[State]
    on_complete: Callable[[dict[str, Any]], None] | None = None
    model_uri: str | None = None  # where Completed says the model is (default: as SageMaker)
    url: str = ""
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]

    def handle(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls.append((operation, body))
            if operation == "CreateTrainingJob":
                name = body["TrainingJobName"]
                if name in self.jobs:
                    return 400, _error("ResourceInUse", f"job {name} exists")
                self.jobs[name] = {"request": body, "step": -1, "stopped": False}
                return 200, {"TrainingJobArn": _arn(name)}
            job = self.jobs.get(body.get("TrainingJobName", ""))
            if job is None:
                return 400, _error("ValidationException", "Requested resource not found.")
            if operation == "StopTrainingJob":
                job["stopped"] = True
                return 200, {}
            if operation == "DescribeTrainingJob":
                return 200, self._describe(job)
        return 400, _error("UnknownOperationException", operation)

    def _describe(self, job: dict[str, Any]) -> dict[str, Any]:
        request = job["request"]
        name = request["TrainingJobName"]
        if job["stopped"]:
            state: State = {"TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped"}
        else:
            job["step"] = min(job["step"] + 1, len(self.script) - 1)
            state = self.script[job["step"]]
        output = request["OutputDataConfig"]["S3OutputPath"]
        description = {
            "TrainingJobName": name,
            "TrainingJobArn": _arn(name),
            "CreationTime": time.time(),
            "AlgorithmSpecification": request["AlgorithmSpecification"],
            "RoleArn": request["RoleArn"],
            "HyperParameters": request.get("HyperParameters", {}),
            "ResourceConfig": request["ResourceConfig"],
            "StoppingCondition": request["StoppingCondition"],
            **state,
        }
        if state["TrainingJobStatus"] == "Completed":
            description["ModelArtifacts"] = {
                "S3ModelArtifacts": self.model_uri or f"{output}/{name}/output/model.tar.gz"
            }
            description["FinalMetricDataList"] = [
                {"MetricName": "validation:f1", "Value": 0.93, "Timestamp": time.time()}
            ]
            if self.on_complete is not None and not job.get("planted"):
                job["planted"] = True
                self.on_complete(description)
        return description


def _arn(name: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}"


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"__type": kind, "message": message}


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSageMaker

    def do_POST(self) -> None:
        target = self.headers.get("X-Amz-Target", "")
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        service, _, operation = target.partition(".")
        if service != "SageMaker":
            status, payload = 400, _error("UnknownOperationException", target)
        else:
            status, payload = self.fake.handle(operation, body)
        encoded = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(encoded)))
        self.end_headers()
        self.wfile.write(encoded)

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass


@contextmanager
def serve(fake: FakeSageMaker) -> Iterator[FakeSageMaker]:
    """Run ``fake`` on a free loopback port for the duration of the block."""
    handler = type("Handler", (_Handler,), {"fake": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
