"""Observability of predictions: sampled requests and responses land in the object store as
JSONL under the deployment's samples prefix; Prometheus counts requests, latency and batch
sizes per deployment and variant."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import generate_latest
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    PredictScene,
    features,
    instances,
    predict_many,
    predict_platform_fixture,
    predict_settings_fixture,
    pscene_fixture,
)


@pytest.fixture
def serving_overrides() -> dict[str, Any]:
    return {"sample_rate": 1.0}


async def test_every_request_is_sampled_to_the_object_store(pscene: PredictScene) -> None:
    deployment = await pscene.deploy([{"name": "champion", "alias": "champion", "weight": 1}])
    headers = await pscene.key()
    ids = []
    for seed in range(3):
        body = {"instances": instances(features(2, seed))}
        response = await pscene.client.post(pscene.url(), json=body, headers=headers)
        assert response.status_code == 200, response.text
        ids.append(response.json()["prediction_id"])
    await pscene.flush()

    store = pscene.component.serving.store
    prefix = f"projects/{pscene.scene.project_id}/deployments/{deployment['id']}/samples"
    keys = await store.list_keys(prefix)
    assert keys, "no samples written"
    assert all(k.endswith(".jsonl") and k.split("/")[-2].count("-") == 2 for k in keys)
    lines = [
        json.loads(line)
        for key in keys
        for line in (await store.get_bytes(key)).decode().splitlines()
    ]
    assert sorted(line["prediction_id"] for line in lines) == sorted(ids)
    assert all(len(line["request"]["instances"]) == 2 for line in lines)
    assert all(line["response"]["variant"] == "champion" for line in lines)


async def test_prometheus_counts_requests_latency_and_batches(pscene: PredictScene) -> None:
    await pscene.deploy([{"name": "champion", "alias": "champion", "weight": 1}])
    headers = await pscene.key()
    body = {"instances": instances(features(1, 0))}

    async def send(_i: int) -> None:
        response = await pscene.client.post(pscene.url(), json=body, headers=headers)
        assert response.status_code == 200, response.text

    await predict_many(send, 40, concurrency=16)
    bad = await pscene.client.post(pscene.url(), json={"instances": [{}]}, headers=headers)
    assert bad.status_code == 422
    text = generate_latest().decode()  # what the metrics listener serves
    label = f'deployment="{pscene.scene.slug}.churn-api"'
    ok = [
        line
        for line in text.splitlines()
        if line.startswith("armillary_predictions_total{")
        and label in line
        and 'outcome="ok"' in line
    ]
    assert ok
    assert float(ok[0].split()[-1]) == 40
    assert any(
        line.startswith("armillary_prediction_duration_seconds_count{") and label in line
        for line in text.splitlines()
    )
    assert "armillary_prediction_batch_rows_count" in text
    assert "armillary_prediction_log_dropped_total" in text
