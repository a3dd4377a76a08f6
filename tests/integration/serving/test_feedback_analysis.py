"""Feedback and analysis: ground truth is recorded idempotently for a request or one of its
rows; a challenger trained on shuffled labels is reported significantly worse, and with the
policy on it is rolled back automatically."""

from __future__ import annotations

import json
import uuid
from typing import Any

import numpy as np
from tests.conftest import auth
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    PredictScene,
    asgi_post,
    features,
    instances,
    predict_many,
    predict_platform_fixture,
    predict_settings_fixture,
    pscene_fixture,
    serving_overrides_fixture,
    truth,
)
from tests.integration.serving.support import assert_problem

CHAMPION_CHALLENGER = [
    {"name": "champion", "alias": "champion", "weight": 50},
    {"name": "challenger", "version": 2, "weight": 50},
]


async def test_feedback_by_request_or_row_is_idempotent_and_unknown_ids_are_refused(
    pscene: PredictScene,
) -> None:
    await pscene.deploy([{"name": "champion", "alias": "champion", "weight": 1}])
    headers = await pscene.key()
    url = pscene.url(what="feedback")
    single = await pscene.client.post(
        pscene.url(), json={"instances": instances(features(1, 1))}, headers=headers
    )
    multi = await pscene.client.post(
        pscene.url(), json={"instances": instances(features(3, 2))}, headers=headers
    )
    one_id, many_id = single.json()["prediction_id"], multi.json()["prediction_id"]

    # Sent right after predicting: the log writer's buffer is flushed first.
    recorded = await pscene.client.post(
        url, json={"prediction_id": one_id, "actual": 1}, headers=headers
    )
    assert recorded.status_code == 200, recorded.text
    assert recorded.json()["recorded"] == 1
    again = await pscene.client.post(
        url, json={"prediction_id": one_id, "actual": 0}, headers=headers
    )
    assert again.status_code == 200, again.text

    unknown = await pscene.client.post(
        url, json={"prediction_id": str(uuid.uuid4()), "actual": 1}, headers=headers
    )
    assert_problem(unknown, 404)
    whole = await pscene.client.post(
        url, json={"prediction_id": many_id, "actual": 1}, headers=headers
    )
    assert f"{many_id}:<row>" in assert_problem(whole, 422)["detail"]

    items = await pscene.client.post(
        url,
        json={
            "items": [
                {"prediction_id": f"{many_id}:0", "actual": 1},
                {"prediction_id": f"{many_id}:2", "actual": 0},
                {"prediction_id": f"{many_id}:3", "actual": 0},
                {"prediction_id": str(uuid.uuid4()), "actual": 0},
            ]
        },
        headers=headers,
    )
    assert items.status_code == 200, items.text
    statuses = [r["status"] for r in items.json()["results"]]
    assert statuses == ["recorded", "recorded", "invalid", "not_found"]
    assert_problem(await pscene.client.post(url, json={"items": []}, headers=headers), 422)

    rows = await pscene.scalar("SELECT count(*) FROM serving_feedback")
    assert rows == 3  # the repeated item replaced its actual value
    actual = await pscene.scalar(
        "SELECT actual::text FROM serving_feedback WHERE prediction_id = :p",
        p=uuid.UUID(one_id),
    )
    assert json.loads(actual) == 0
    assert_problem(await pscene.client.post(url, json={"prediction_id": one_id, "actual": 1}), 401)


async def _traffic_with_feedback(
    pscene: PredictScene, headers: dict[str, str], n: int
) -> list[dict[str, Any]]:
    rows = features(n, 11)
    labels = truth(rows)
    app = pscene.platform.app

    async def send(i: int) -> dict[str, Any]:
        body = json.dumps({"instances": instances(rows[i : i + 1])}).encode()
        status, answer = await asgi_post(app, pscene.url(), body, headers)
        assert status == 200, answer
        return dict(json.loads(answer))

    answers = await predict_many(send, n)
    items = [
        {"prediction_id": a["prediction_id"], "actual": int(label)}
        for a, label in zip(answers, labels, strict=True)
    ]
    for start in range(0, n, 250):
        response = await pscene.client.post(
            pscene.url(what="feedback"), json={"items": items[start : start + 250]}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert response.json()["rejected"] == 0
    return answers


async def test_analysis_reports_the_shuffled_challenger_significantly_worse(
    pscene: PredictScene,
) -> None:
    shadow = {"name": "mirror", "version": 3, "weight": 0, "shadow": True}
    await pscene.deploy([*CHAMPION_CHALLENGER, shadow])
    headers = await pscene.key()
    await _traffic_with_feedback(pscene, headers, 600)
    response = await pscene.client.get(
        pscene.url(what="analysis"), headers=auth(pscene.scene.token)
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["baseline"] == "champion"
    variants = {v["name"]: v for v in report["variants"]}
    assert variants["champion"]["requests"] + variants["challenger"]["requests"] == 600
    # The shadow saw every request and its copies were scored with the same feedback: it
    # learned the opposite rule, so it is almost always wrong.
    assert variants["mirror"]["requests"] == 600
    assert variants["mirror"]["labelled"] == 600
    assert variants["mirror"]["quality"]["value"] < 0.1
    comparison = next(c for c in report["comparisons"] if c["variant"] == "challenger")
    assert comparison["significant"] is True
    assert comparison["direction"] == "worse"
    assert comparison["p_value"] < 0.001
    assert comparison["variant_value"] < 0.75 < 0.9 < comparison["baseline_value"]
    assert "roll" in comparison["recommendation"].lower()
    decision = report["auto_rollback"]
    assert decision["enabled"] is False
    by_variant = {d["variant"]: d["roll_back"] for d in decision["decisions"]}
    assert by_variant == {"challenger": True, "mirror": False}  # shadows are never removed
    # The policy is off: nothing changed.
    current = await pscene.client.get(
        f"{pscene.scene.base}/churn-api", headers=auth(pscene.scene.token)
    )
    assert {v["name"] for v in current.json()["variants"]} == {"champion", "challenger", "mirror"}


async def test_the_policy_rolls_the_worse_challenger_back(pscene: PredictScene) -> None:
    policy = {"auto_rollback": {"enabled": True, "min_labelled": 100, "alpha": 0.01}}
    await pscene.deploy(CHAMPION_CHALLENGER, policy=policy)
    headers = await pscene.key()
    await _traffic_with_feedback(pscene, headers, 600)

    current = await pscene.client.get(
        f"{pscene.scene.base}/churn-api", headers=auth(pscene.scene.token)
    )
    assert [v["name"] for v in current.json()["variants"]] == ["champion"]
    history = await pscene.client.get(
        f"{pscene.scene.base}/churn-api/configs", headers=auth(pscene.scene.token)
    )
    assert history.status_code == 200, history.text
    assert "auto_rollback" in history.text

    report = (
        await pscene.client.get(pscene.url(what="analysis"), headers=auth(pscene.scene.token))
    ).json()
    (action,) = report["auto_rollback"]["actions"]
    assert action["variant"] == "challenger"
    assert "worse" in action["reason"]
    # Traffic now goes to the champion only.
    after = await pscene.client.post(
        pscene.url(), json={"instances": instances(features(1, 99)), "key": "x"}, headers=headers
    )
    assert after.json()["variant"] == "champion"
    assert np.isfinite(report["variants"][0]["requests"])
