"""Traffic: a 90/10 split within binomial tolerance, sticky keys, shadow copies recorded but
never returned, and an alias move rerouting traffic under load without a failed request."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter
from typing import Any

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
)

SPLIT = [
    {"name": "champion", "alias": "champion", "weight": 90},
    {"name": "challenger", "version": 2, "weight": 10},
    {"name": "mirror", "version": 3, "weight": 0, "shadow": True},
]
N = 10_000


async def test_ten_thousand_predictions_split_90_10_and_the_shadow_only_records(
    pscene: PredictScene,
) -> None:
    deployment = await pscene.deploy(SPLIT, mode="random")
    headers = await pscene.key()
    body = json.dumps({"instances": instances(features(1, 3))}).encode()
    app = pscene.platform.app
    started = time.perf_counter()

    async def send(_i: int) -> dict[str, Any]:
        status, answer = await asgi_post(app, pscene.url(), body, headers)
        assert status == 200, answer
        return dict(json.loads(answer))

    answers = await predict_many(send, N, concurrency=64)
    elapsed = time.perf_counter() - started
    served = Counter(a["variant"] for a in answers)
    assert set(served) == {"champion", "challenger"}  # the shadow never answers
    assert {a["model_version"] for a in answers if a["variant"] == "champion"} == {1}
    assert {a["model_version"] for a in answers if a["variant"] == "challenger"} == {2}
    # Binomial(10 000, 0.1): sd = 30; 4 sd either side fails by chance about once in 16 000.
    tolerance = 4 * math.sqrt(N * 0.1 * 0.9)
    assert abs(served["challenger"] - N * 0.1) <= tolerance, served
    print(f"{N} predictions in {elapsed:.1f} s")

    await pscene.flush()
    deployment_id = deployment["id"]
    logged = await pscene.scalar(
        "SELECT count(*) FROM serving_predictions WHERE deployment_id = :d AND NOT shadow",
        d=uuid.UUID(deployment_id),
    )
    assert logged == N
    shadows = await pscene.scalar(
        "SELECT count(*) FROM serving_predictions WHERE deployment_id = :d AND shadow "
        "AND variant = 'mirror' AND model_version = 3 AND NOT error AND parent_id IS NOT NULL",
        d=uuid.UUID(deployment_id),
    )
    assert shadows == N
    # The shadow (the inverse rule) answered differently from what clients got.
    differs = await pscene.scalar(
        "SELECT count(*) FROM serving_predictions s JOIN serving_predictions p "
        "ON s.parent_id = p.id WHERE p.deployment_id = :d AND p.variant = 'champion' "
        "AND s.outputs::text <> p.outputs::text",
        d=uuid.UUID(deployment_id),
    )
    assert differs == served["champion"]


async def test_a_sticky_key_always_reaches_the_same_variant(pscene: PredictScene) -> None:
    await pscene.deploy(SPLIT[:2], mode="sticky")
    headers = await pscene.key()
    row = instances(features(1, 4))
    reached: dict[str, set[str]] = {}
    for k in range(60):
        key = f"customer-{k}"
        for attempt in range(5):
            if attempt % 2:
                response = await pscene.client.post(
                    pscene.url(), json={"instances": row}, headers={**headers, "X-Routing-Key": key}
                )
            else:
                response = await pscene.client.post(
                    pscene.url(), json={"instances": row, "key": key}, headers=headers
                )
            assert response.status_code == 200, response.text
            reached.setdefault(key, set()).add(response.json()["variant"])
    assert all(len(variants) == 1 for variants in reached.values()), reached
    # Over 60 keys at 90/10 both variants are reached (fails by chance with p = 0.9^60).
    assert {next(iter(v)) for v in reached.values()} == {"champion", "challenger"}


async def test_moving_the_followed_alias_reroutes_traffic_without_failures(
    pscene: PredictScene,
) -> None:
    await pscene.deploy([{"name": "champion", "alias": "champion", "weight": 1}])
    headers = await pscene.key()
    row = {"instances": instances(features(1, 5))}
    versions: list[int] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def client_loop() -> None:
        while not stop.is_set():
            response = await pscene.client.post(pscene.url(), json=row, headers=headers)
            if response.status_code != 200:
                failures.append(response.text)
            else:
                versions.append(response.json()["model_version"])

    clients = [asyncio.create_task(client_loop()) for _ in range(8)]
    try:
        while len(versions) < 200:
            await asyncio.sleep(0.01)
        moved = await pscene.client.put(
            f"{pscene.scene.models}/churn/aliases/champion",
            json={"version": 3, "reason": "new champion"},
            headers=auth(pscene.scene.token),
        )
        assert moved.status_code == 200, moved.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and versions[-1] != 3:
            await asyncio.sleep(0.01)
        seen = len(versions)
        while len(versions) < seen + 200:
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    assert failures == []
    assert versions[0] == 1
    assert versions[-1] == 3
    switch = versions.index(3)
    # Once the move is picked up, every later answer comes from the new version.
    assert set(versions[switch + 20 :]) == {3}
