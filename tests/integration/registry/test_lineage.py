"""Lineage both ways: a version's graph (job, workflow version, dataset versions with SHA-256,
and what those were made from), and the model versions trained on a dataset version."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.conftest import auth
from tests.integration.registry.support import CSV, Scene, assert_problem, register


async def _derived_datasets(scene: Scene) -> dict[str, dict[str, Any]]:
    """raw v1 -> (a data job) -> iris v1; iris-test v1 uploaded by hand."""
    raw = await scene.upload_dataset("raw", CSV + b"1,1,1,1\n")
    writer_job = uuid.uuid4()
    lineage = json.dumps({"task": "write", "source": {"name": "raw", "version": 1}})
    iris = await scene.upload_dataset(
        "iris", CSV, token=await scene.job_token(writer_job), lineage=lineage
    )
    test = await scene.upload_dataset("iris-test", b"f0,label\n1,0\n")
    return {"raw": raw, "iris": iris, "iris-test": test, "writer_job": {"id": str(writer_job)}}


async def test_a_version_s_lineage_graph(scene: Scene) -> None:
    datasets = await _derived_datasets(scene)
    version = await register(scene)
    response = await scene.client.get(
        f"{scene.model_base}/versions/1/lineage", headers=auth(scene.token)
    )
    assert response.status_code == 200, response.text
    graph = response.json()
    nodes = {n["id"]: n for n in graph["nodes"]}
    edges = {(e["from"], e["relation"], e["to"]) for e in graph["edges"]}

    root = f"model_version:{version['id']}"
    job = f"job:{version['lineage']['job_id']}"
    flow = "workflow_version:7d3c2f1e-0000-4000-8000-000000000001@3"
    iris, test, raw = (
        "dataset_version:iris@1",
        "dataset_version:iris-test@1",
        "dataset_version:raw@1",
    )
    writer = f"job:{datasets['writer_job']['id']}"
    assert nodes[root]["kind"] == "model_version"
    assert nodes[job]["kind"] == "job"
    assert nodes[flow]["kind"] == "workflow_version"
    assert (nodes[flow]["workflow"], nodes[flow]["version"]) == ("train-churn", 3)
    for node, name in ((iris, "iris"), (test, "iris-test"), (raw, "raw")):
        assert nodes[node]["kind"] == "dataset_version"
        assert nodes[node]["sha256"] == datasets[name]["sha256"]
    assert {
        (root, "produced_by", job),
        (job, "ran", flow),
        (root, "trained_on", iris),
        (root, "evaluated_on", test),
        (job, "read", iris),
        # One level further, from the data service's own lineage of iris v1.
        (iris, "produced_by", writer),
        (iris, "derived_from", raw),
    } <= edges
    assert "dataset_version:other@1" not in nodes


async def test_the_model_versions_trained_on_a_dataset_version(scene: Scene) -> None:
    datasets = await _derived_datasets(scene)
    await register(scene)
    await register(scene)
    url = f"{scene.base}/lineage"

    by_name = await scene.client.get(
        url, params={"dataset": "iris", "version": 1}, headers=auth(scene.token)
    )
    assert by_name.status_code == 200, by_name.text
    page = by_name.json()
    assert page["total"] == 2
    assert [(i["model"], i["version"], i["role"]) for i in page["items"]] == [
        ("churn", 2, "training"),
        ("churn", 1, "training"),
    ]
    assert {i["sha256"] for i in page["items"]} == {datasets["iris"]["sha256"]}

    dataset_id = page["items"][0]["dataset_id"]
    by_id = await scene.client.get(
        url, params={"dataset": dataset_id, "version": 1}, headers=auth(scene.token)
    )
    assert by_id.json()["total"] == 2
    evaluated = await scene.client.get(
        url, params={"dataset": "iris-test", "version": 1}, headers=auth(scene.token)
    )
    assert {i["role"] for i in evaluated.json()["items"]} == {"evaluation"}
    for params in ({"dataset": "raw", "version": 1}, {"dataset": "iris", "version": 2}):
        none = await scene.client.get(url, params=params, headers=auth(scene.token))
        assert none.json()["total"] == 0
    assert_problem(
        await scene.client.get(url, params={"dataset": "iris"}, headers=auth(scene.token)), 422
    )


async def test_an_uploaded_version_has_no_job_lineage(scene: Scene) -> None:
    from tests.integration.registry.models_for_tests import onnx_bytes

    response = await scene.client.post(
        f"{scene.model_base}/versions/upload",
        files={"file": ("m.onnx", onnx_bytes())},
        headers=auth(scene.token),
    )
    assert response.status_code == 201, response.text
    graph = (
        await scene.client.get(f"{scene.model_base}/versions/1/lineage", headers=auth(scene.token))
    ).json()
    assert [n["kind"] for n in graph["nodes"]] == ["model_version"]
    assert graph["edges"] == []
