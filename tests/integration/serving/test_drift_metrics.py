"""Drift (issue 16, ADR 0032): a model version uploaded with its training reference; the
serving process keeps the rows of sampled requests per variant and sets the PSI of each
feature, and the largest, against that reference: small for requests like the training
rows, large for shifted ones; and the periodic round sets them without being asked."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY
from tests.conftest import auth
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    FEATURES,
    SIGNATURE,
    PredictScene,
    features,
    instances,
    model_bytes,
    predict_platform_fixture,
    pscene_fixture,
)

from armillary.kit.drift import build_reference
from armillary.serving.predict.settings import PredictSettings


@pytest.fixture(name="serving_overrides")
def sample_everything() -> dict[str, Any]:
    return {"sample_rate": 1.0}


@pytest.fixture(name="predict_settings")
def drift_settings() -> PredictSettings:
    return PredictSettings(
        rollback_debounce_seconds=0,
        drift_interval_seconds=0.05,
        drift_window_rows=200,
        drift_min_rows=50,
    )


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def upload_with_reference(pscene: PredictScene) -> int:
    reference = build_reference(features(2000, 0), FEATURES, categorical=[])
    response = await pscene.client.post(
        f"{pscene.scene.models}/{pscene.scene.model}/versions/upload",
        files={"file": ("model.onnx", model_bytes("good"), "application/octet-stream")},
        data={
            "signature": json.dumps(SIGNATURE),
            "drift_reference": reference.model_dump_json(),
        },
        headers=auth(pscene.scene.token),
    )
    assert response.status_code == 201, response.text
    return int(response.json()["version"])


async def send(pscene: PredictScene, headers: dict[str, str], rows: np.ndarray[Any, Any]) -> None:
    for start in range(0, len(rows), 20):
        response = await pscene.client.post(
            pscene.url(), json={"instances": instances(rows[start : start + 20])}, headers=headers
        )
        assert response.status_code == 200, response.text


async def test_psi_per_variant_against_the_training_reference(pscene: PredictScene) -> None:
    version = await upload_with_reference(pscene)
    await pscene.deploy([{"name": "fresh", "version": version, "weight": 1}])
    headers = await pscene.key()
    label = f"{pscene.scene.slug}.churn-api"
    component = pscene.component
    references = component.serving.directory.drift_reference

    # Like the training rows: every feature's PSI is small.
    await send(pscene, headers, features(200, 11))
    scores = component.predictor.drift.compute(references)[(label, "fresh")]
    assert set(scores) == set(FEATURES)
    assert max(scores.values()) < 0.1
    assert value("armillary_serving_drift_psi", deployment=label, variant="fresh", feature="f0")
    calm = value("armillary_serving_drift_psi_max", deployment=label, variant="fresh")
    assert calm is not None
    assert calm < 0.1

    # f0 shifted by one: the window (200 rows) now holds only shifted rows.
    shifted = features(200, 12)
    shifted[:, 0] += 1.0
    await send(pscene, headers, shifted)
    scores = component.predictor.drift.compute(references)[(label, "fresh")]
    assert scores["f0"] > 1.0
    assert scores["f1"] < 0.1
    assert (
        value("armillary_serving_drift_psi_max", deployment=label, variant="fresh")
        == (scores["f0"])
    )


async def test_the_periodic_round_sets_the_gauges(pscene: PredictScene) -> None:
    version = await upload_with_reference(pscene)
    await pscene.deploy([{"name": "periodic", "version": version, "weight": 1}])
    headers = await pscene.key()
    label = f"{pscene.scene.slug}.churn-api"
    await send(pscene, headers, features(60, 13))
    # Computed every 0.05 s by the serving process's own task: wait for its round.
    for _ in range(200):
        if (
            value("armillary_serving_drift_psi_max", deployment=label, variant="periodic")
            is not None
        ):
            break
        await asyncio.sleep(0.05)
    assert (
        value("armillary_serving_drift_psi_max", deployment=label, variant="periodic") is not None
    )


async def test_a_version_without_reference_reports_no_drift(pscene: PredictScene) -> None:
    await pscene.deploy([{"name": "champion", "alias": "champion", "weight": 1}])
    headers = await pscene.key()
    await send(pscene, headers, features(60, 14))
    found = pscene.component.predictor.drift.compute(
        pscene.component.serving.directory.drift_reference
    )
    assert (f"{pscene.scene.slug}.churn-api", "champion") not in found
