"""Who may call predict with an account: any project member, except that a ``user``-role
account needs a grant; a grant alone suffices; everyone else gets 404."""

from __future__ import annotations

from tests.conftest import auth
from tests.integration.serving.support import Scene, assert_problem


async def test_members_may_predict(scene: Scene) -> None:
    await scene.deployed()
    for who in (scene.user, await scene.member("viewer"), await scene.member("editor")):
        response = await scene.client.get(scene.caller_url(), headers=auth(who["token"]))
        assert response.status_code == 200, response.text
        assert response.json() == {"kind": "user", "id": who["id"], "label": who["email"]}
    job = await scene.job_token()
    assert (await scene.client.get(scene.caller_url(), headers=auth(job))).status_code == 200


async def test_a_user_account_needs_a_grant(scene: Scene) -> None:
    await scene.deployed()
    await scene.deployed("other")
    member = await scene.member("viewer", platform_role="user")
    headers = auth(member["token"])
    assert_problem(await scene.client.get(scene.caller_url(), headers=headers), 403)

    grant_url = f"{scene.base}/churn-api/grants/{member['id']}"
    granted = await scene.client.put(grant_url, headers=auth(scene.token))
    assert granted.status_code == 200, granted.text
    assert granted.json()["user_id"] == member["id"]
    assert (await scene.client.put(grant_url, headers=auth(scene.token))).status_code == 200
    listed = await scene.client.get(f"{scene.base}/churn-api/grants", headers=auth(scene.token))
    assert [g["user_id"] for g in listed.json()["items"]] == [member["id"]]

    assert (await scene.client.get(scene.caller_url(), headers=headers)).status_code == 200
    # The grant is for that deployment only.
    assert_problem(await scene.client.get(scene.caller_url("other"), headers=headers), 403)

    removed = await scene.client.delete(grant_url, headers=auth(scene.token))
    assert removed.status_code == 204, removed.text
    assert_problem(await scene.client.get(scene.caller_url(), headers=headers), 403)
    assert_problem(await scene.client.delete(grant_url, headers=auth(scene.token)), 404)


async def test_outsiders_get_404_unless_granted(scene: Scene) -> None:
    await scene.deployed()
    outsider = await scene.outsider()
    user = await scene.outsider("user")
    for who in (outsider, user):
        assert_problem(await scene.client.get(scene.caller_url(), headers=auth(who["token"])), 404)
    granted = await scene.client.put(
        f"{scene.base}/churn-api/grants/{user['id']}", headers=auth(scene.token)
    )
    assert granted.status_code == 200, granted.text
    response = await scene.client.get(scene.caller_url(), headers=auth(user["token"]))
    assert response.status_code == 200, response.text
    assert response.json()["id"] == user["id"]
    # An outsider still sees nothing of the deployment's management.
    assert_problem(
        await scene.client.get(f"{scene.base}/churn-api", headers=auth(user["token"])), 404
    )


async def test_grants_are_managed_by_owners_and_editors(scene: Scene) -> None:
    await scene.deployed()
    viewer = await scene.member("viewer")
    user = await scene.outsider("user")
    url = f"{scene.base}/churn-api/grants/{user['id']}"
    assert_problem(await scene.client.put(url, headers=auth(viewer["token"])), 403)
    assert_problem(await scene.client.put(url, headers=auth(await scene.job_token())), 403)
    editor = await scene.member("editor")
    assert (await scene.client.put(url, headers=auth(editor["token"]))).status_code == 200
