"""Predict over HTTP: answers, probabilities and ids; bad bodies and content types refused
with clear problems and nothing unpickled; who may call."""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path

import numpy as np
from tests.conftest import auth
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    FEATURES,
    MAX_BODY,
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

ONE = {"variants": [{"name": "champion", "alias": "champion", "weight": 1}]}


async def test_predict_answers_with_variant_version_probabilities_and_id(
    pscene: PredictScene,
) -> None:
    await pscene.deploy(ONE["variants"])
    headers = await pscene.key()
    rows = features(20, 7)
    response = await pscene.client.post(
        pscene.url(), json={"instances": instances(rows)}, headers=headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["variant"] == "champion"
    assert body["model"] == "churn"
    assert body["model_version"] == 1
    uuid.UUID(body["prediction_id"])
    assert np.mean(np.array(body["predictions"]) == truth(rows)) >= 0.9
    assert len(body["probabilities"]) == 20
    assert set(body["probabilities"][0]) == {"0", "1"}
    assert abs(sum(body["probabilities"][0].values()) - 1) < 1e-6

    split = {"dataframe_split": {"columns": FEATURES, "data": rows.tolist()}}
    again = await pscene.client.post(pscene.url(), json=split, headers=headers)
    assert again.status_code == 200, again.text
    assert again.json()["predictions"] == body["predictions"]
    assert again.json()["prediction_id"] != body["prediction_id"]


async def test_bad_bodies_are_4xx_problems_with_clear_messages(pscene: PredictScene) -> None:
    await pscene.deploy(ONE["variants"])
    headers = await pscene.key()
    post = pscene.client.post
    one = instances(features(1, 1))[0]

    missing = {k: v for k, v in one.items() if k != "f2"}
    body = assert_problem(
        await post(pscene.url(), json={"instances": [missing]}, headers=headers), 422
    )
    assert "f2" in body["detail"]

    wrong_type = {**one, "f1": "high"}
    body = assert_problem(
        await post(pscene.url(), json={"instances": [wrong_type]}, headers=headers), 422
    )
    assert "f1" in body["detail"]

    short_row = {"instances": [[0.1, 0.2, 0.3]]}
    assert_problem(await post(pscene.url(), json=short_row, headers=headers), 422)
    assert_problem(await post(pscene.url(), json={"rows": [one]}, headers=headers), 422)
    assert_problem(await post(pscene.url(), json=[one], headers=headers), 422)

    broken = await post(
        pscene.url(),
        content=b'{"instances": [',
        headers={**headers, "content-type": "application/json"},
    )
    assert "JSON" in assert_problem(broken, 400)["detail"]

    huge = {"instances": [one] * 2000}
    body = assert_problem(await post(pscene.url(), json=huge, headers=headers), 413)
    assert str(MAX_BODY) in body["detail"]


async def test_too_large_body_is_refused_without_a_declared_length(pscene: PredictScene) -> None:
    await pscene.deploy(ONE["variants"])
    headers = await pscene.key()

    async def chunks():  # type: ignore[no-untyped-def]
        yield b'{"instances": ['
        for _ in range(MAX_BODY // 100 + 10):
            yield b'{"f0": 0.1, "f1": 0.2, "f2": 0.3, "f3": 0.4},' + b" " * 60
        yield b"]}"

    response = await pscene.client.post(
        pscene.url(), content=chunks(), headers={**headers, "content-type": "application/json"}
    )
    assert_problem(response, 413)


class _Marker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (self.path, "unpickled!"))


async def test_pickle_and_other_content_types_are_refused_unread(
    pscene: PredictScene, tmp_path: Path
) -> None:
    await pscene.deploy(ONE["variants"])
    headers = await pscene.key()
    marker = tmp_path / "marker"
    payload = pickle.dumps(_Marker(marker))
    for content_type in (
        "application/python-pickle",
        "application/octet-stream",
        "text/plain",
        "application/x-www-form-urlencoded",
    ):
        response = await pscene.client.post(
            pscene.url(), content=payload, headers={**headers, "content-type": content_type}
        )
        body = assert_problem(response, 415)
        assert "application/json" in body["detail"]
    no_type = await pscene.client.post(pscene.url(), content=payload, headers=headers)
    assert_problem(no_type, 415)
    # Declared as JSON, a pickle is only ever invalid JSON.
    as_json = await pscene.client.post(
        pscene.url(), content=payload, headers={**headers, "content-type": "application/json"}
    )
    assert_problem(as_json, 400)
    assert not marker.exists()


async def test_who_may_predict(pscene: PredictScene) -> None:
    await pscene.deploy(ONE["variants"])
    scene = pscene.scene
    body = {"instances": instances(features(1, 2))}
    post = pscene.client.post

    assert_problem(await post(pscene.url(), json=body), 401)
    assert_problem(await post(pscene.url(), json=body, headers={"X-API-Key": "nope"}), 401)

    key = await scene.new_key("churn-api")
    ok = await post(pscene.url(), json=body, headers={"X-API-Key": key["key"]})
    assert ok.status_code == 200, ok.text
    revoked = await pscene.client.delete(
        f"{scene.base}/churn-api/keys/{key['id']}", headers=auth(scene.token)
    )
    assert revoked.status_code == 204, revoked.text
    assert_problem(await post(pscene.url(), json=body, headers={"X-API-Key": key["key"]}), 401)

    outsider = await scene.outsider()
    assert_problem(await post(pscene.url(), json=body, headers=auth(outsider["token"])), 404)
    assert_problem(
        await post(pscene.url(deployment="nope"), json=body, headers=auth(scene.token)), 404
    )

    viewer = await scene.member("viewer", platform_role="user")
    assert_problem(await post(pscene.url(), json=body, headers=auth(viewer["token"])), 403)
    granted = await pscene.client.put(
        f"{scene.base}/churn-api/grants/{viewer['id']}", headers=auth(scene.token)
    )
    assert granted.status_code in (200, 201, 204), granted.text
    allowed = await post(pscene.url(), json=body, headers=auth(viewer["token"]))
    assert allowed.status_code == 200, allowed.text

    member = await post(pscene.url(), json=body, headers=auth(scene.token))
    assert member.status_code == 200, member.text
