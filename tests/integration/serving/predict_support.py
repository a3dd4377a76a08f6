"""Helpers for the predict, feedback and v2 tests: real models trained here, the platform with
the prediction routes wired in, and a scene with a deployment and an API key.

The app is built the way ``conftest._wire`` builds it, plus the prediction routers when the
serving app does not include them yet, with settings the tests need (a small body limit, no
auto-rollback debounce).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression
from sqlalchemy import text
from tests.conftest import auth, client_for
from tests.integration.serving.support import Platform, Scene

import armillary.serving.predict.models  # noqa: F401 - tables for TRUNCATE
from armillary.app import create_runtime
from armillary.data import app as data_app
from armillary.identity import app as identity_app
from armillary.kit.app_factory import build_app
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.registry import app as registry_app
from armillary.registry.client import RegistryClient
from armillary.serving import app as serving_app
from armillary.serving.components import SERVICE, serving_of
from armillary.serving.predict import api as predict_api
from armillary.serving.predict import wiring
from armillary.serving.predict.settings import PredictSettings
from armillary.serving.predict.wiring import PredictComponent, predict_of
from armillary.serving.settings import ServingSettings
from armillary.workflows import app as workflows_app

FEATURES = ["f0", "f1", "f2", "f3"]
SIGNATURE = {
    "inputs": [{"name": f, "dtype": "Float64"} for f in FEATURES],
    "target": {"name": "label", "dtype": "Int64"},
    "problem": "classification",
    "classes": [0, 1],
}
MAX_BODY = 64 * 1024


def truth(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The label the good model learns: whether f0 + f1 is above 1."""
    return (rows[:, 0] + rows[:, 1] > 1.0).astype(int)


def features(n: int, seed: int) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).random((n, len(FEATURES)))


@functools.cache
def model_bytes(kind: str) -> bytes:
    """ONNX classifiers: ``good`` learns the rule; ``shuffled`` learns shuffled labels;
    ``inverse`` learns the opposite rule (so its answers are told apart from ``good``'s)."""
    rows = features(2000, 0)
    labels = truth(rows)
    if kind == "shuffled":
        labels = np.random.default_rng(1).permutation(labels)
    elif kind == "inverse":
        labels = 1 - labels
    fitted = LogisticRegression(C=100.0).fit(rows, labels)
    onnx = to_onnx(fitted, np.zeros((1, len(FEATURES)), dtype=np.float32), target_opset=17)
    return bytes(onnx.SerializeToString())


def instances(rows: np.ndarray[Any, Any]) -> list[dict[str, float]]:
    return [dict(zip(FEATURES, map(float, row), strict=True)) for row in rows]


def wire(
    settings: Settings,
    storage: StorageSettings,
    cache_dir: Path,
    serving_settings: ServingSettings,
    predict_settings: PredictSettings,
) -> FastAPI:
    runtime = create_runtime(settings, storage_settings=storage)
    if SERVICE not in runtime.services:
        serving_app.install(runtime, settings=serving_settings, storage_settings=storage)
    serving = serving_of(runtime)
    serving.settings = serving_settings
    if serving.registry is None:
        client = RegistryClient.in_process(
            registry_app.create_internal_app(runtime), registry_app.create_private_app(runtime)
        )
        serving.registry = client

        async def close(_runtime: object) -> None:
            await client.aclose()

        runtime.shutdown_hooks.append(close)
    runtime.services.pop(wiring.SERVICE, None)
    wiring.install(runtime, predict_settings)
    routers = [
        *identity_app.ROUTERS,
        *data_app.ROUTERS,
        *workflows_app.ROUTERS,
        *registry_app.ROUTERS,
        *serving_app.ROUTERS,
    ]
    routers += [r for r in predict_api.ROUTERS if r not in routers]
    # Predict is matched first, as in the platform's app: these tests run the lean path.
    return build_app(
        runtime,
        title="Armillary (predict tests)",
        routers=routers,
        hot_routes=serving_app.HOT_ROUTES,
    )


def serving_settings(cache_dir: Path, **overrides: Any) -> ServingSettings:
    values: dict[str, Any] = {"cache_dir": str(cache_dir), "max_request_bytes": MAX_BODY}
    values.update(overrides)
    return ServingSettings(**values)


@dataclass
class PredictScene:
    """A project with model ``churn`` (v1 good, v2 shuffled labels, v3 inverse), alias
    ``champion`` on v1, and helpers to deploy, make keys and call predict."""

    scene: Scene

    @property
    def platform(self) -> Platform:
        return self.scene.platform

    @property
    def client(self) -> httpx.AsyncClient:
        return self.scene.client

    @property
    def component(self) -> PredictComponent:
        return predict_of(self.platform.app.state.runtime)

    def url(self, deployment: str = "churn-api", what: str = "predict") -> str:
        return f"{self.scene.base}/{deployment}/{what}"

    async def upload(self, kind: str, signature: dict[str, Any] | None = None) -> int:
        response = await self.client.post(
            f"{self.scene.models}/{self.scene.model}/versions/upload",
            files={"file": ("model.onnx", model_bytes(kind), "application/octet-stream")},
            data={"signature": json.dumps(signature or SIGNATURE)},
            headers=auth(self.scene.token),
        )
        assert response.status_code == 201, response.text
        return int(response.json()["version"])

    async def deploy(
        self,
        variants: list[dict[str, Any]],
        *,
        name: str = "churn-api",
        mode: str = "random",
        policy: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "routing": {"mode": mode},
            "variants": [{"model": "churn", **v} for v in variants],
        }
        if policy is not None:
            body["policy"] = policy
        response = await self.client.post(
            self.scene.base, json=body, headers=auth(self.scene.token)
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def key(self, deployment: str = "churn-api") -> dict[str, str]:
        created = await self.scene.new_key(deployment)
        return {"X-API-Key": str(created["key"])}

    async def flush(self) -> None:
        await self.component.predictor.drain_shadows()
        await self.component.predictor.log.flush()

    async def scalar(self, sql: str, **params: Any) -> Any:
        async with self.platform.app.state.runtime.db.read_only() as session:
            return await session.scalar(text(sql), params)


async def predict_many(send: Callable[[int], Any], count: int, concurrency: int = 32) -> list[Any]:
    """``send(i)`` for ``i`` in ``range(count)``, at most ``concurrency`` at once."""
    limit = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Any:
        async with limit:
            return await send(i)

    return list(await asyncio.gather(*(one(i) for i in range(count))))


@pytest.fixture(name="predict_settings")
def predict_settings_fixture() -> PredictSettings:
    return PredictSettings(rollback_debounce_seconds=0, log_queue_rows=200_000)


@pytest.fixture(name="serving_overrides")
def serving_overrides_fixture() -> dict[str, Any]:
    return {}


@pytest.fixture(name="predict_platform")
async def predict_platform_fixture(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    predict_settings: PredictSettings,
    serving_overrides: dict[str, Any],
) -> AsyncIterator[Platform]:
    cache = tmp_path / "serving-cache"
    app = wire(
        # The edge's rate limits are not what these tests measure (thousands of requests).
        settings_factory(rate_limit_enabled=False),
        StorageSettings(backend="local"),
        cache,
        serving_settings(cache, **serving_overrides),
        predict_settings,
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
        client = await stack.enter_async_context(client_for(app))
        yield Platform(app, client)


@pytest.fixture(name="pscene")
async def pscene_fixture(predict_platform: Platform) -> PredictScene:
    found = PredictScene(await Scene.create(predict_platform))
    assert await found.upload("good") == 1
    assert await found.upload("shuffled") == 2
    assert await found.upload("inverse") == 3
    await found.scene.set_alias("champion", 1)
    return found


async def asgi_post(
    app: FastAPI, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, bytes]:
    """A POST straight into the ASGI app: the same middleware and routes as over HTTP, without
    a client library's per-request cost (for the tests that send thousands)."""
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw,
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.Event().wait()  # the client never disconnects
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)
