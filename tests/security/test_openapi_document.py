"""The OpenAPI document is self-contained: every ``$ref`` points inside it and resolves, so
tools (Schemathesis, code generators) can read it. The workflow-spec body once pointed at a
route (``/api/v1/workflow-spec/schema``), which no OpenAPI tool resolves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from tests.conftest import Api, auth


def refs(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str):
                yield item
            else:
                yield from refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from refs(item)


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_every_ref_resolves_inside_the_document(app: FastAPI) -> None:
    document = app.openapi()
    found = set(refs(document))
    assert found
    assert sorted(ref for ref in found if not ref.startswith("#/")) == []
    for ref in found:
        assert resolve(document, ref) is not None


def test_the_workflow_spec_body_is_a_component(app: FastAPI) -> None:
    document = app.openapi()
    operation = document["paths"]["/api/v1/projects/{project}/workflows"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/WorkflowSpec"}
    spec = document["components"]["schemas"]["WorkflowSpec"]
    assert set(spec["required"]) == {"name", "tasks"}
    assert "x-component-schemas" not in operation


async def test_an_unreadable_body_is_a_documented_400_problem(app: FastAPI, api: Api) -> None:
    """A body that is not even text: FastAPI answers 400, which every operation with a body
    documents (Schemathesis checks the status codes against the document)."""
    token = await api.admin_token()
    response = await api.client.post(
        "/api/v1/projects",
        content=b"\xff\xfe{",
        headers={**auth(token), "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    operation = app.openapi()["paths"]["/api/v1/projects"]["post"]
    assert "400" in operation["responses"]


def test_a_malformed_path_segment_is_a_documented_400(app: FastAPI) -> None:
    """Services check names in the path themselves (400 with the rule), e.g. a model name."""
    operation = app.openapi()["paths"]["/api/v1/projects/{project}/models/{model}"]["get"]
    assert {"400", "404"} <= set(operation["responses"])
