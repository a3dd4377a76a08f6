"""Many writers logging to one run at once, and a long metric history."""

from __future__ import annotations

import asyncio

from tests.integration.tracking.support import Mlflow

WRITERS = 6
BATCHES = 4
POINTS = 50  # per batch


async def test_concurrent_writers_lose_nothing(mlflow: Mlflow) -> None:
    run_id = (await mlflow.run(await mlflow.experiment("parallel")))["info"]["run_id"]

    async def writer(w: int) -> None:
        # Shared keys in an order of each writer's own, so their upserts overlap crosswise.
        shared = [f"k{(w + i) % WRITERS}" for i in range(WRITERS)]
        for b in range(BATCHES):
            first = b * POINTS
            await mlflow.ok(
                "POST",
                "runs/log-batch",
                {
                    "run_id": run_id,
                    "metrics": [
                        {"key": f"w{w}", "value": s * 0.5, "timestamp": 1000 + s, "step": s}
                        for s in range(first, first + POINTS)
                    ]
                    + [{"key": "shared", "value": w, "timestamp": 1, "step": w * 100 + b}]
                    + [{"key": k, "value": w, "timestamp": 1, "step": b} for k in shared],
                    "params": [{"key": f"p{w}-{b}", "value": str(b)}]
                    + [{"key": f"seed-{k}", "value": "7"} for k in shared],
                    "tags": [{"key": "last", "value": f"w{w}"}]
                    + [{"key": k, "value": f"w{w}"} for k in shared],
                },
            )

    await asyncio.gather(*(writer(w) for w in range(WRITERS)))

    run = (await mlflow.ok("GET", "runs/get", {"run_id": run_id}))["run"]
    params = {p["key"]: p["value"] for p in run["data"]["params"]}
    assert len(params) == WRITERS * BATCHES + WRITERS
    assert params["seed-k0"] == "7"
    latest = {m["key"]: m for m in run["data"]["metrics"]}
    # The latest value is the greatest step, whichever writer committed last.
    assert latest["shared"]["step"] == (WRITERS - 1) * 100 + BATCHES - 1
    for w in range(WRITERS):
        history = await mlflow.ok(
            "GET", "metrics/get-history", {"run_id": run_id, "metric_key": f"w{w}"}
        )
        steps = [m["step"] for m in history["metrics"]]
        assert steps == list(range(BATCHES * POINTS)), f"writer {w}"
        assert latest[f"w{w}"]["step"] == BATCHES * POINTS - 1
    shared = await mlflow.ok(
        "GET", "metrics/get-history", {"run_id": run_id, "metric_key": "shared"}
    )
    assert len(shared["metrics"]) == WRITERS * BATCHES
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["last"] in {f"w{w}" for w in range(WRITERS)}


async def test_ten_thousand_points_keep_order_and_steps(mlflow: Mlflow) -> None:
    run_id = (await mlflow.run(await mlflow.experiment("long")))["info"]["run_id"]
    total = 10_000
    for first in range(0, total, 1000):
        await mlflow.ok(
            "POST",
            "runs/log-batch",
            {
                "run_id": run_id,
                "metrics": [
                    # Values that do not sort like the steps, so order is the history's own.
                    {"key": "loss", "value": (s * 7919) % 1000 / 1000, "timestamp": s, "step": s}
                    for s in range(first, first + 1000)
                ],
            },
        )
    history = await mlflow.ok(
        "GET", "metrics/get-history", {"run_id": run_id, "metric_key": "loss"}
    )
    points = history["metrics"]
    assert [p["step"] for p in points] == list(range(total))
    assert [p["value"] for p in points] == [(s * 7919) % 1000 / 1000 for s in range(total)]
    assert "next_page_token" not in history

    # Paged, the same points in the same order.
    paged: list[int] = []
    token = None
    while True:
        params = {"run_id": run_id, "metric_key": "loss", "max_results": 3000}
        if token:
            params["page_token"] = token
        page = await mlflow.ok("GET", "metrics/get-history", params)
        paged += [p["step"] for p in page["metrics"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert paged == list(range(total))


async def test_racing_creators_of_one_experiment_name(mlflow: Mlflow) -> None:
    responses = await asyncio.gather(
        *(mlflow.post("experiments/create", {"name": "contested"}) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 400, 400, 400, 400], [r.text for r in responses]
    for response in responses:
        if response.status_code == 400:
            assert response.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
