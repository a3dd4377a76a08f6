"""Project boundaries (another project's models are a 404, whoever asks), who may change what,
problem+json answers, and RegistryClient, the registry's typed client for other services."""

from __future__ import annotations

from tests.conftest import auth
from tests.integration.registry.support import (
    Scene,
    assert_problem,
    register,
    training_job,
    with_datasets,
)

from armillary.registry.app import create_internal_app
from armillary.registry.client import RegistryClient


async def test_other_projects_models_are_not_found(scene: Scene) -> None:
    await with_datasets(scene)
    await register(scene)
    stranger = await scene.platform.api.create_user(
        await scene.platform.api.admin_token(), "data_scientist"
    )
    own = await scene.platform.api.create_project(stranger["token"])
    urls = [
        scene.model_base,
        f"{scene.model_base}/versions",
        f"{scene.model_base}/versions/1",
        f"{scene.model_base}/versions/1/artifacts/model.skops",
        f"{scene.model_base}/versions/1/lineage",
        f"{scene.model_base}/aliases",
        f"{scene.base}/lineage?dataset=iris&version=1",
    ]
    for url in urls:
        assert_problem(await scene.client.get(url, headers=auth(stranger["token"])), 404)
    # The model's id in the stranger's own project: still nothing.
    model_id = (await scene.client.get(scene.model_base, headers=auth(scene.token))).json()["id"]
    foreign = await scene.client.get(
        f"/api/v1/projects/{own['slug']}/models/{model_id}", headers=auth(stranger["token"])
    )
    assert_problem(foreign, 404)
    # A job token of the scene's project cannot read the stranger's project.
    _, job_token = await training_job(scene)
    assert_problem(
        await scene.client.get(f"/api/v1/projects/{own['slug']}/models", headers=auth(job_token)),
        404,
    )
    assert (await scene.client.get(scene.model_base, headers=auth(job_token))).status_code == 200


async def test_who_may_change_models(scene: Scene) -> None:
    viewer = await scene.member("viewer")
    editor = await scene.member("editor")
    _, job_token = await training_job(scene)
    assert_problem(
        await scene.client.post(scene.base, json={"name": "x"}, headers=auth(viewer["token"])), 403
    )
    assert_problem(
        await scene.client.patch(
            scene.model_base, json={"description": "x"}, headers=auth(job_token)
        ),
        403,
    )
    assert_problem(await scene.client.delete(scene.model_base, headers=auth(editor["token"])), 403)
    assert_problem(await scene.client.delete(scene.model_base, headers=auth(job_token)), 403)
    edited = await scene.client.patch(
        scene.model_base, json={"description": "x"}, headers=auth(editor["token"])
    )
    assert edited.status_code == 200
    # A job may create the model it registers into (the register task does).
    created = await scene.client.post(
        scene.base, json={"name": "from-job"}, headers=auth(job_token)
    )
    assert created.status_code == 201
    unauthenticated = await scene.client.get(scene.model_base)
    assert_problem(unauthenticated, 401)
    invalid = await scene.client.post(
        scene.base, json={"name": "y", "extra": 1}, headers=auth(scene.token)
    )
    assert_problem(invalid, 422)


async def test_the_registry_client_resolves_aliases_and_versions(scene: Scene) -> None:
    await with_datasets(scene)
    await register(scene)
    await scene.client.put(
        f"{scene.model_base}/aliases/champion", json={"version": 1}, headers=auth(scene.token)
    )
    client = RegistryClient.in_process(create_internal_app(scene.platform.app.state.runtime))
    try:
        slug = scene.project["slug"]
        found = await client.alias(scene.token, slug, scene.model, "champion")
        assert found is not None
        assert (found["alias"], found["version"]) == ("champion", 1)
        assert found["model_version"]["artifacts"]["model.skops"]["sha256"]
        version = await client.version(scene.token, scene.project["id"], scene.model, 1)
        assert version is not None
        assert version["version"] == 1
        assert await client.alias(scene.token, slug, scene.model, "nope") is None
        assert await client.version(scene.token, slug, "nope", 1) is None
    finally:
        await client.aclose()
