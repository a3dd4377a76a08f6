"""``DataClient.dataset_version``: a version's record as the caller may see it, or None."""

from __future__ import annotations

import uuid

import pytest
from tests.conftest import auth
from tests.integration.data.support import Platform, encode, known_frame, make_scene

from armillary.data.app import create_internal_app
from armillary.data.client import DataClient
from armillary.kit.errors import Unauthorized

CONTENT = encode(known_frame(), "csv")


@pytest.fixture
def backend() -> str:
    return "local"


async def test_dataset_version_is_the_versions_record_for_those_who_may_see_it(
    platform: Platform,
) -> None:
    scene = await make_scene(platform)
    other = await make_scene(platform, "elsewhere")
    uploaded = await scene.upload("data.csv", CONTENT)
    assert uploaded.status_code == 201, uploaded.text
    assert (await other.upload("data.csv", CONTENT)).status_code == 201
    over_http = await platform.client.get(f"{scene.versions}/1", headers=auth(scene.token))

    client = DataClient.in_process(create_internal_app(platform.app.state.runtime))
    try:
        slug = scene.project["slug"]
        found = await client.dataset_version(scene.token, slug, "measurements", 1)
        assert found == over_http.json()
        assert found is not None
        assert found["sha256"] == uploaded.json()["sha256"]
        assert found["holds"] == []
        by_ids = await client.dataset_version(
            scene.token, scene.project["id"], scene.dataset["id"], 1
        )
        assert by_ids == found

        # Unknown version or dataset, a name that is not one, another project: None.
        assert await client.dataset_version(scene.token, slug, "measurements", 2) is None
        assert await client.dataset_version(scene.token, slug, "missing", 1) is None
        assert await client.dataset_version(scene.token, slug, "../etc", 1) is None
        assert (
            await client.dataset_version(scene.token, other.project["slug"], "elsewhere", 1) is None
        )
        assert (
            await client.dataset_version(other.token, other.project["slug"], "elsewhere", 1)
            is not None
        )
        # A deleted version is no longer visible.
        deleted = await platform.client.delete(f"{scene.versions}/1", headers=auth(scene.token))
        assert deleted.status_code == 204
        assert await client.dataset_version(scene.token, slug, "measurements", 1) is None

        with pytest.raises(ValueError, match="version"):
            await client.dataset_version(scene.token, slug, "measurements", 0)
        with pytest.raises(Unauthorized):
            await client.dataset_version("not-a-token", slug, "measurements", 1)
        assert uuid.UUID(found["id"])
    finally:
        await client.aclose()
