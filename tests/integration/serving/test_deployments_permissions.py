"""Who may manage deployments: viewers read; owners and editors change; the project's job
tokens create and reconfigure (the ``deploy`` task) but do not roll back, delete or manage
access; outsiders see nothing."""

from __future__ import annotations

from tests.conftest import auth
from tests.integration.serving.support import Scene, assert_problem, variants

UPDATE = {"variants": variants(("only", {"version": 2, "weight": 1})), "reason": "r"}


async def test_viewers_read_and_change_nothing(scene: Scene) -> None:
    await scene.deployed()
    viewer = await scene.member("viewer")
    headers = auth(viewer["token"])
    url = f"{scene.base}/churn-api"
    assert (await scene.client.get(url, headers=headers)).status_code == 200
    assert (await scene.client.get(scene.base, headers=headers)).status_code == 200
    assert (await scene.client.get(f"{url}/configs", headers=headers)).status_code == 200
    assert_problem(await scene.deploy("mine", token=viewer["token"]), 403)
    assert_problem(await scene.client.put(url, json=UPDATE, headers=headers), 403)
    assert_problem(await scene.client.post(f"{url}/rollback", json={}, headers=headers), 403)
    assert_problem(await scene.client.delete(url, headers=headers), 403)


async def test_editors_change_everything(scene: Scene) -> None:
    editor = await scene.member("editor")
    headers = auth(editor["token"])
    await scene.deployed()
    url = f"{scene.base}/churn-api"
    assert (await scene.deploy("theirs", token=editor["token"])).status_code == 201
    assert (await scene.client.put(url, json=UPDATE, headers=headers)).status_code == 200
    assert (await scene.client.post(f"{url}/rollback", json={}, headers=headers)).status_code == 200
    assert (await scene.client.delete(url, headers=headers)).status_code == 204


async def test_job_tokens_create_and_reconfigure_only(scene: Scene) -> None:
    job = await scene.job_token()
    created = await scene.deploy(token=job)
    assert created.status_code == 201, created.text
    url = f"{scene.base}/churn-api"
    headers = auth(job)
    updated = await scene.client.put(url, json=UPDATE, headers=headers)
    assert updated.status_code == 200, updated.text
    history = await scene.client.get(f"{url}/configs", headers=auth(scene.token))
    assert all(c["job_id"] is not None for c in history.json()["items"])
    assert_problem(await scene.client.post(f"{url}/rollback", json={}, headers=headers), 403)
    assert_problem(await scene.client.delete(url, headers=headers), 403)
    # A task that does not deploy holds no deployment rights at all.
    trainer = auth(await scene.job_token(task_type="train"))
    assert_problem(await scene.client.put(url, json=UPDATE, headers=trainer), 403)
    assert_problem(await scene.deploy("other", token=await scene.job_token(None)), 403)


async def test_a_job_token_reaches_no_other_project(scene: Scene) -> None:
    other = await scene.platform.api.create_project(scene.token)
    job = await scene.job_token()
    response = await scene.client.get(
        f"/api/v1/projects/{other['slug']}/deployments", headers=auth(job)
    )
    assert_problem(response, 404)


async def test_outsiders_see_nothing(scene: Scene) -> None:
    await scene.deployed()
    outsider = await scene.outsider()
    headers = auth(outsider["token"])
    assert_problem(await scene.client.get(scene.base, headers=headers), 404)
    assert_problem(await scene.client.get(f"{scene.base}/churn-api", headers=headers), 404)
    assert_problem(await scene.deploy("x", token=outsider["token"]), 404)
    assert_problem(await scene.client.get(scene.base), 401)


async def test_a_user_account_member_reads_and_manages_nothing(scene: Scene) -> None:
    await scene.deployed()
    member = await scene.member("viewer", platform_role="user")
    headers = auth(member["token"])
    assert (await scene.client.get(f"{scene.base}/churn-api", headers=headers)).status_code == 200
    assert_problem(await scene.deploy("x", token=member["token"]), 403)
