"""The Open Inference Protocol v2 over the same deployments: health, metadata, readiness, and
infer with JSON tensors giving the same answers as predict; binary tensors refused clearly;
a standard client library (tritonclient's HTTP client) against the app on a real port."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from tests.conftest import auth
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    FEATURES,
    PredictScene,
    features,
    instances,
    predict_platform_fixture,
    predict_settings_fixture,
    pscene_fixture,
    serving_overrides_fixture,
    truth,
)
from tests.integration.serving.support import assert_problem
from tests.integration.workflows.engine import serve
from tests.ports import free_port

ONE = [{"name": "champion", "alias": "champion", "weight": 1}]


def _name(pscene: PredictScene) -> str:
    return f"{pscene.scene.slug}.churn-api"


async def test_health_metadata_and_readiness(pscene: PredictScene) -> None:
    await pscene.deploy(ONE)
    headers = await pscene.key()
    client = pscene.client
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).status_code == 200

    meta = await client.get(f"/v2/models/{_name(pscene)}", headers=headers)
    assert meta.status_code == 200, meta.text
    body = meta.json()
    assert body["name"] == _name(pscene)
    assert body["platform"] == "armillary"
    assert body["versions"] == ["1"]
    per_feature = [t for t in body["inputs"] if t["name"] in FEATURES]
    assert [t["name"] for t in per_feature] == FEATURES
    assert all(t["datatype"] == "FP64" and t["shape"] == [-1] for t in per_feature)
    matrix = next(t for t in body["inputs"] if t["name"] == "input")
    assert matrix["shape"] == [-1, 4]
    assert {o["name"] for o in body["outputs"]} == {"predictions", "probabilities"}

    ready = await client.get(f"/v2/models/{_name(pscene)}/ready", headers=headers)
    assert ready.status_code == 200, ready.text
    assert_problem(await client.get(f"/v2/models/{_name(pscene)}"), 401)
    assert_problem(await client.get(f"/v2/models/{pscene.scene.slug}.nope", headers=headers), 404)
    assert_problem(await client.get("/v2/models/no-dot", headers=headers), 404)
    outsider = await pscene.scene.outsider()
    assert_problem(
        await client.get(f"/v2/models/{_name(pscene)}", headers=auth(outsider["token"])), 404
    )


async def test_infer_gives_the_same_answers_as_predict(pscene: PredictScene) -> None:
    await pscene.deploy(ONE)
    headers = await pscene.key()
    rows = features(12, 21)
    predicted = await pscene.client.post(
        pscene.url(), json={"instances": instances(rows)}, headers=headers
    )
    expected = predicted.json()
    url = f"/v2/models/{_name(pscene)}/infer"

    matrix = {
        "id": "req-1",
        "inputs": [
            {"name": "input", "shape": [12, 4], "datatype": "FP64", "data": rows.ravel().tolist()}
        ],
    }
    per_feature = {
        "inputs": [
            {"name": f, "shape": [12], "datatype": "FP32", "data": rows[:, i].tolist()}
            for i, f in enumerate(FEATURES)
        ]
    }
    for request in (matrix, per_feature):
        response = await pscene.client.post(url, json=request, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        outputs = {o["name"]: o for o in body["outputs"]}
        assert outputs["predictions"]["data"] == expected["predictions"]
        assert outputs["predictions"]["datatype"] == "INT64"
        proba = np.array(outputs["probabilities"]["data"]).reshape(
            outputs["probabilities"]["shape"]
        )
        classes = outputs["probabilities"]["parameters"]["classes"]
        want = np.array([[p[c] for c in classes] for p in expected["probabilities"]])
        # The FP32 tensors reach the model as they would have: float32 either way.
        assert np.allclose(proba, want, atol=1e-6)
        assert body["model_name"] == _name(pscene)
        assert body["model_version"] == "1"
        assert body["parameters"]["variant"] == "champion"
    assert response.json().get("id") is None
    # Bearer tokens work too.
    bearer = await pscene.client.post(url, json=matrix, headers=auth(pscene.scene.token))
    assert bearer.status_code == 200, bearer.text
    assert bearer.json()["id"] == "req-1"


async def test_infer_refuses_binary_data_and_bad_tensors_clearly(pscene: PredictScene) -> None:
    await pscene.deploy(ONE)
    headers = await pscene.key()
    url = f"/v2/models/{_name(pscene)}/infer"
    post = pscene.client.post
    good = {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [0.1, 0.2, 0.3, 0.4]}

    binary = await post(
        url,
        content=b'{"inputs":[]}' + b"\x00" * 32,
        headers={**headers, "Inference-Header-Content-Length": "13"},
    )
    assert "binary" in assert_problem(binary, 415)["detail"].lower()
    octets = await post(
        url, content=b"\x00" * 16, headers={**headers, "content-type": "application/octet-stream"}
    )
    assert_problem(octets, 415)
    wants_binary = await post(
        url, json={"inputs": [good], "parameters": {"binary_data_output": True}}, headers=headers
    )
    assert "binary_data=False" in assert_problem(wants_binary, 400)["detail"]

    wrong_shape = {**good, "shape": [1, 3], "data": [0.1, 0.2, 0.3]}
    assert_problem(await post(url, json={"inputs": [wrong_shape]}, headers=headers), 422)
    wrong_type = {**good, "datatype": "BYTES", "data": ["a", "b", "c", "d"]}
    assert_problem(await post(url, json={"inputs": [wrong_type]}, headers=headers), 422)
    assert_problem(await post(url, json={"outputs": []}, headers=headers), 422)
    assert_problem(await post(url, json={"inputs": [good]}), 401)


async def test_tritonclient_gets_the_right_answer(pscene: PredictScene) -> None:
    httpclient = pytest.importorskip("tritonclient.http")
    await pscene.deploy(ONE)
    headers = await pscene.key()
    rows = features(5, 31)
    expected = (
        await pscene.client.post(pscene.url(), json={"instances": instances(rows)}, headers=headers)
    ).json()["predictions"]
    name = _name(pscene)
    port = free_port()

    def call() -> tuple[bool, list[int], dict[str, object]]:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}")
        try:
            ready = client.is_model_ready(name, headers=headers)
            tensor = httpclient.InferInput("input", [5, 4], "FP64")
            tensor.set_data_from_numpy(rows.astype(np.float64), binary_data=False)
            wanted = [
                httpclient.InferRequestedOutput("predictions", binary_data=False),
                httpclient.InferRequestedOutput("probabilities", binary_data=False),
            ]
            result = client.infer(name, [tensor], outputs=wanted, headers=headers)
            metadata = client.get_model_metadata(name, headers=headers)
            return ready, result.as_numpy("predictions").tolist(), metadata
        finally:
            client.close()

    async with contextlib.asynccontextmanager(serve)(pscene.platform.app, port):
        ready, answered, metadata = await asyncio.to_thread(call)
    assert ready is True
    assert answered == expected
    assert np.mean(np.array(answered) == truth(rows)) >= 0.8
    assert metadata["name"] == name
