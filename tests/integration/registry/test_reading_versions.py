"""Reading versions: ordered by a metric (best first, `-` reverses), filtered by tag, compared
side by side; editing a version's description and tags; listing models."""

from __future__ import annotations

from typing import Any

from tests.conftest import auth
from tests.integration.registry.support import (
    Scene,
    assert_problem,
    register,
    version_body,
    with_datasets,
)


async def _versions(scene: Scene, **params: Any) -> list[int]:
    response = await scene.client.get(
        f"{scene.model_base}/versions", params=params, headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    return [v["version"] for v in response.json()["items"]]


async def _three(scene: Scene) -> None:
    await with_datasets(scene)
    runs = [
        ({"f1": 0.70, "rmse": 3.0}, {"C": 1.0, "penalty": "l2"}, {"stage": "dev"}),
        ({"f1": 0.90, "rmse": 1.0}, {"C": 0.1, "penalty": "l2"}, {"stage": "prod"}),
        ({"rmse": 2.0}, {"C": 1.0, "penalty": "l2", "max_iter": 50}, {"stage": "dev"}),
    ]
    for metrics, params, tags in runs:
        body = version_body(metrics=metrics, params=params)
        body["tags"] = tags
        await register(scene, body=body)


async def test_versions_order_by_metrics_and_fields(scene: Scene) -> None:
    await _three(scene)
    assert await _versions(scene) == [3, 2, 1]
    # Largest f1 first; version 3 has no f1: last.
    assert await _versions(scene, order_by="metrics.f1") == [2, 1, 3]
    # A leading "-" reverses: smallest rmse first.
    assert await _versions(scene, order_by="-metrics.rmse") == [2, 3, 1]
    assert await _versions(scene, order_by="metrics.rmse") == [1, 3, 2]
    assert await _versions(scene, order_by="-version") == [1, 2, 3]
    assert await _versions(scene, order_by="-created_at") == [1, 2, 3]
    assert await _versions(scene, tag="stage=dev") == [3, 1]
    assert await _versions(scene, order_by="metrics.f1", limit=1, offset=1) == [1]
    for bad in ("metrics.f1;drop", "name", "metrics."):
        response = await scene.client.get(
            f"{scene.model_base}/versions", params={"order_by": bad}, headers=auth(scene.token)
        )
        assert_problem(response, 400)


async def test_compare_puts_metrics_side_by_side_with_differing_params(scene: Scene) -> None:
    await _three(scene)
    response = await scene.client.get(
        f"{scene.model_base}/compare", params={"versions": "1,2,3"}, headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    compared = response.json()
    assert compared["versions"] == [1, 2, 3]
    assert compared["metrics"] == {"f1": [0.7, 0.9, None], "rmse": [3.0, 1.0, 2.0]}
    # penalty is the same everywhere: not shown.
    assert compared["params"] == {"C": [1.0, 0.1, 1.0], "max_iter": [None, None, 50]}
    assert [[d["dataset"] for d in used] for used in compared["datasets"]] == [
        ["iris", "iris-test"]
    ] * 3
    missing = await scene.client.get(
        f"{scene.model_base}/compare", params={"versions": "1,7"}, headers=auth(scene.token)
    )
    assert "7" in assert_problem(missing, 404)["detail"]
    bad = await scene.client.get(
        f"{scene.model_base}/compare", params={"versions": "1,x"}, headers=auth(scene.token)
    )
    assert_problem(bad, 400)


async def test_a_version_s_description_and_tags_can_be_edited(scene: Scene) -> None:
    await with_datasets(scene)
    await register(scene)
    url = f"{scene.model_base}/versions/1"
    response = await scene.client.patch(
        url, json={"description": "better", "tags": {"stage": "prod"}}, headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    got = (await scene.client.get(url, headers=auth(scene.token))).json()
    assert (got["description"], got["tags"]) == ("better", {"stage": "prod"})
    assert_problem(
        await scene.client.get(f"{scene.model_base}/versions/9", headers=auth(scene.token)), 404
    )
    artifact = await scene.client.get(f"{url}/artifacts/trials.json", headers=auth(scene.token))
    assert_problem(artifact, 404)


async def test_models_are_listed_by_prefix_and_tag_and_names_are_unique(scene: Scene) -> None:
    for name, tags in (("churn-v2", {"team": "risk"}), ("fraud", {"team": "risk"})):
        created = await scene.client.post(
            scene.base, json={"name": name, "tags": tags}, headers=auth(scene.token)
        )
        assert created.status_code == 201
    again = await scene.client.post(scene.base, json={"name": "fraud"}, headers=auth(scene.token))
    assert_problem(again, 409)
    for bad in ("../x", "lineage", "-x"):
        response = await scene.client.post(
            scene.base, json={"name": bad}, headers=auth(scene.token)
        )
        assert_problem(response, 400)

    async def names(**params: str) -> list[str]:
        response = await scene.client.get(scene.base, params=params, headers=auth(scene.token))
        assert response.status_code == 200, response.text
        return [m["name"] for m in response.json()["items"]]

    assert await names() == ["churn", "churn-v2", "fraud"]
    assert await names(prefix="churn") == ["churn", "churn-v2"]
    assert await names(tag="team=risk") == ["churn-v2", "fraud"]
    assert await names(tag="team") == ["churn", "churn-v2", "fraud"]
    # Soft delete (owners): gone from lists, the name free again.
    deleted = await scene.client.delete(f"{scene.base}/fraud", headers=auth(scene.token))
    assert deleted.status_code == 204
    assert await names() == ["churn", "churn-v2"]
    assert_problem(await scene.client.get(f"{scene.base}/fraud", headers=auth(scene.token)), 404)
