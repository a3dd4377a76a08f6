"""MLflow's experiment endpoints: shapes, lifecycle, search, and MLflow's errors."""

from __future__ import annotations

from tests.integration.tracking.support import Mlflow, assert_error


async def test_create_get_and_get_by_name(mlflow: Mlflow) -> None:
    created = await mlflow.ok(
        "POST", "experiments/create", {"name": "churn", "tags": [{"key": "team", "value": "ds"}]}
    )
    experiment_id = created["experiment_id"]
    assert len(experiment_id) == 32

    by_id = (await mlflow.ok("GET", "experiments/get", {"experiment_id": experiment_id}))[
        "experiment"
    ]
    by_name = (await mlflow.ok("GET", "experiments/get-by-name", {"experiment_name": "churn"}))[
        "experiment"
    ]
    assert by_id == by_name
    assert by_id["name"] == "churn"
    assert by_id["lifecycle_stage"] == "active"
    assert by_id["tags"] == [{"key": "team", "value": "ds"}]
    assert by_id["artifact_location"].endswith(experiment_id)
    assert isinstance(by_id["creation_time"], int)

    duplicate = await mlflow.post("experiments/create", {"name": "churn"})
    assert_error(duplicate, 400, "RESOURCE_ALREADY_EXISTS")
    missing = await mlflow.get("experiments/get-by-name", {"experiment_name": "nope"})
    assert_error(missing, 404, "RESOURCE_DOES_NOT_EXIST")
    unknown = await mlflow.get("experiments/get", {"experiment_id": "f" * 32})
    assert_error(unknown, 404, "RESOURCE_DOES_NOT_EXIST")
    invalid = await mlflow.post("experiments/create", {"tags": []})
    assert_error(invalid, 400, "INVALID_PARAMETER_VALUE")


async def test_rename_tag_delete_restore_and_search(mlflow: Mlflow) -> None:
    first = await mlflow.experiment("alpha")
    second = await mlflow.experiment("beta")
    await mlflow.ok("POST", "experiments/update", {"experiment_id": second, "new_name": "gamma"})
    await mlflow.ok(
        "POST",
        "experiments/set-experiment-tag",
        {"experiment_id": first, "key": "stage", "value": "prod"},
    )

    async def names(body: dict[str, object]) -> list[str]:
        found = await mlflow.ok("POST", "experiments/search", body)
        return [e["name"] for e in found.get("experiments", [])]

    assert await names({"order_by": ["name ASC"]}) == ["alpha", "gamma"]
    assert await names({"filter": "name LIKE 'gam%'"}) == ["gamma"]
    assert await names({"filter": "tags.stage = 'prod'"}) == ["alpha"]
    await mlflow.ok(
        "POST", "experiments/delete-experiment-tag", {"experiment_id": first, "key": "stage"}
    )
    assert await names({"filter": "tags.stage = 'prod'"}) == []
    gone = await mlflow.post(
        "experiments/delete-experiment-tag", {"experiment_id": first, "key": "stage"}
    )
    assert_error(gone, 404, "RESOURCE_DOES_NOT_EXIST")

    await mlflow.ok("POST", "experiments/delete", {"experiment_id": first})
    got = await mlflow.ok("GET", "experiments/get", {"experiment_id": first})
    assert got["experiment"]["lifecycle_stage"] == "deleted"
    assert await names({}) == ["gamma"]
    assert await names({"view_type": "DELETED_ONLY"}) == ["alpha"]
    assert sorted(await names({"view_type": "ALL"})) == ["alpha", "gamma"]
    # A deleted experiment keeps its name, as in MLflow.
    assert_error(
        await mlflow.post("experiments/create", {"name": "alpha"}), 400, "RESOURCE_ALREADY_EXISTS"
    )
    await mlflow.ok("POST", "experiments/restore", {"experiment_id": first})
    assert sorted(await names({})) == ["alpha", "gamma"]


async def test_search_pages(mlflow: Mlflow) -> None:
    for n in range(5):
        await mlflow.experiment(f"e{n}")
    seen: list[str] = []
    token = None
    while True:
        body: dict[str, object] = {"max_results": 2, "order_by": ["name"]}
        if token:
            body["page_token"] = token
        page = await mlflow.ok("POST", "experiments/search", body)
        seen += [e["name"] for e in page["experiments"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == ["e0", "e1", "e2", "e3", "e4"]
    bad = await mlflow.post("experiments/search", {"page_token": "garbage"})
    assert_error(bad, 400, "INVALID_PARAMETER_VALUE")
    unsupported = await mlflow.post("experiments/search", {"filter": "name = 'a' OR name = 'b'"})
    assert_error(unsupported, 400, "INVALID_PARAMETER_VALUE")
