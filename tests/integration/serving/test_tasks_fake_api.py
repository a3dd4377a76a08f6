"""A stand-in of the platform API for the serving tasks' tests (``httpx.MockTransport``): the
training fake (job artifacts, aliases, model files) plus deployments, model-version records
and dataset uploads, recording every request the tasks make. The end-to-end path against the
real API is tests/integration/cli/test_quickstart.py."""

from __future__ import annotations

import json
import re
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import httpx
from tests.unit.training.fakes import PROJECT, FakePlatform, _problem

__all__ = ["FakeServingPlatform"]


class FakeServingPlatform(FakePlatform):
    def __init__(self) -> None:
        super().__init__()
        self.deployments: dict[str, dict[str, Any]] = {}
        self.versions: dict[tuple[str, int], dict[str, Any]] = {}
        self.datasets: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[tuple[str, str, Any]] = []

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle_serving)

    def add_deployment(self, name: str, variants: list[dict[str, Any]]) -> None:
        self.deployments[name] = {
            "id": str(uuid.uuid4()),
            "name": name,
            "project": PROJECT,
            "config_version": 1,
            "routing": {"mode": "random"},
            "variants": [self._resolved(v) for v in variants],
            "policy": {},
        }

    def add_version(
        self, model: str, version: int, files: dict[str, bytes], signature: Any
    ) -> None:
        for name, content in files.items():
            self.model_files[(model, version, name)] = content
        self.versions[(model, version)] = {
            "id": str(uuid.uuid4()),
            "model": model,
            "version": version,
            "signature": signature,
            "format": "onnx" if "model.onnx" in files else "skops",
            "artifacts": {n: {"size_bytes": len(c), "sha256": "x"} for n, c in files.items()},
        }

    def _resolved(self, variant: dict[str, Any]) -> dict[str, Any]:
        version = variant.get("version")
        if version is None:
            alias = self.aliases.get((variant["model"], variant["alias"]))
            version = alias["version"] if alias else None
        # As the deployments API answers: what the variant serves now, under `resolved`.
        resolved = (
            None
            if version is None
            else {"model_version": version, "model_version_id": f"mv-{version}"}
        )
        return {**variant, "resolved": resolved}

    def handle_serving(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = (
            json.loads(request.content)
            if request.headers.get("content-type") == ("application/json")
            else None
        )
        self.calls.append((request.method, path, body))
        base = f"/api/v1/projects/{PROJECT}"
        if path == f"{base}/deployments" and request.method == "POST":
            assert request.headers.get("authorization", "").startswith("Bearer ")
            if body["name"] in self.deployments:
                return _problem(409)
            self.add_deployment(body["name"], body["variants"])
            return httpx.Response(201, json=self.deployments[body["name"]])
        if found := re.fullmatch(rf"{base}/deployments/([^/]+)", path):
            current = self.deployments.get(found[1])
            if current is None:
                return _problem(404)
            if request.method == "PUT":
                current["variants"] = [self._resolved(v) for v in body["variants"]]
                current["config_version"] += 1
            return httpx.Response(200, json=current)
        if found := re.fullmatch(rf"{base}/models/([^/]+)/versions/(\d+)", path):
            record = self.versions.get((found[1], int(found[2])))
            return httpx.Response(200, json=record) if record else _problem(404)
        if found := re.fullmatch(rf"{base}/datasets/([^/]+)", path):
            if found[1] not in self.datasets:
                return _problem(404)
            return httpx.Response(200, json={"name": found[1]})
        if path == f"{base}/datasets" and request.method == "POST":
            self.datasets[body["name"]] = []
            return httpx.Response(201, json={"name": body["name"]})
        if found := re.fullmatch(rf"{base}/datasets/([^/]+)/versions", path):
            return self._upload(found[1], request)
        return self.handle(request)

    def _upload(self, name: str, request: httpx.Request) -> httpx.Response:
        content_type = request.headers["content-type"]
        message = BytesParser(policy=HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.read()
        )
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            fields[str(part.get_param("name", header="content-disposition"))] = part.get_payload(
                decode=True
            )
        versions = self.datasets[name]
        version = {
            "number": len(versions) + 1,
            "format": fields["format"].decode(),
            "bytes": fields["file"],
            "lineage": json.loads(fields["lineage"]),
        }
        versions.append(version)
        return httpx.Response(201, json={k: v for k, v in version.items() if k != "bytes"})
