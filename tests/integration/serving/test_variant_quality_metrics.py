"""Per-variant quality from feedback (issue 16): feedback moves the variant's quality gauge
(accuracy over its latest scored rows, a sliding window) and counts the scored rows."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    PredictScene,
    features,
    instances,
    predict_platform_fixture,
    predict_settings_fixture,
    pscene_fixture,
    serving_overrides_fixture,
)

from armillary.serving.predict.settings import PredictSettings


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


@pytest.fixture(name="predict_settings")
def window_of_four() -> PredictSettings:
    return PredictSettings(rollback_debounce_seconds=0, quality_window_rows=4)


async def test_feedback_moves_the_variant_quality_gauge(pscene: PredictScene) -> None:
    await pscene.deploy([{"name": "champion", "alias": "champion", "weight": 1}])
    headers = await pscene.key()
    label = f"{pscene.scene.slug}.churn-api"
    rows = features(6, 7)
    answers = []
    for row in rows:
        response = await pscene.client.post(
            pscene.url(), json={"instances": instances(row[None, :])}, headers=headers
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())

    async def send(index: int, right: bool) -> None:
        predicted = answers[index]["predictions"][0]
        actual = predicted if right else 1 - int(predicted)
        response = await pscene.client.post(
            pscene.url(what="feedback"),
            json={"prediction_id": answers[index]["prediction_id"], "actual": actual},
            headers=headers,
        )
        assert response.status_code == 200, response.text

    # 3 right out of 4.
    for index, right in enumerate((True, True, True, False)):
        await send(index, right)
    quality = ("armillary_serving_variant_quality", {"deployment": label, "variant": "champion"})
    assert value(quality[0], **quality[1], metric="accuracy") == 0.75
    assert value("armillary_serving_feedback_total", deployment=label, variant="champion") == 4
    # Two more wrong answers: the window holds the latest 4 rows (right, wrong, wrong, wrong).
    await send(4, False)
    await send(5, False)
    assert value(quality[0], **quality[1], metric="accuracy") == 0.25
    assert value("armillary_serving_feedback_total", deployment=label, variant="champion") == 6
