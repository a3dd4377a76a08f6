"""``run_deploy`` against a stand-in of the API: the exact requests it sends (the create body,
the PUT body with the other variants scaled, resolved fields left out, the shadow replaced) and
the outputs it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.integration.serving.test_tasks_fake_api import FakeServingPlatform
from tests.unit.training.fakes import JOB, PROJECT

from armillary.contracts.serving import DeployOutputs
from armillary.serving import tasks
from armillary.serving.tasks import ServingTaskError, run_deploy, scaled_variants

BASE = f"/api/v1/projects/{PROJECT}/deployments"
REGISTERED = {"model": "churn", "version": 7, "model_version_id": "mv-7", "alias": "challenger"}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeServingPlatform:
    platform = FakeServingPlatform()
    monkeypatch.setattr(tasks, "_api_transport", platform.transport)
    return platform


def _deploy(fake: FakeServingPlatform, tmp_path: Path, **params: Any) -> dict[str, Any]:
    context = fake.context(tmp_path, "deploy")
    return run_deploy(
        {"registration": "register", "deployment": "churn", **params},
        {"register": dict(REGISTERED)},
        context,
    )


def _writes(fake: FakeServingPlatform) -> list[tuple[str, str, Any]]:
    return [call for call in fake.calls if call[0] != "GET"]


def _variant(name: str, version: int, weight: float, shadow: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "model": "churn",
        "version": version,
        "alias": None,
        "weight": weight,
        "shadow": shadow,
    }


def test_a_missing_deployment_is_created_with_the_version_at_100_percent(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    outputs = _deploy(fake, tmp_path, variant="champion", weight=25)

    [(method, path, body)] = _writes(fake)
    assert (method, path) == ("POST", BASE)
    assert body["name"] == "churn"
    assert body["variants"] == [_variant("champion", 7, 100.0)]
    assert f"job {JOB} task deploy" in body["description"]
    assert DeployOutputs.model_validate(outputs) == DeployOutputs(
        deployment="churn",
        config_version=1,
        variant="champion",
        model="churn",
        model_version=7,
        weight=100.0,
        created=True,
    )


def test_a_new_challenger_takes_its_weight_and_the_others_share_the_rest(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    fake.add_deployment(
        "churn",
        [
            _variant("champion", 3, 80.0),
            _variant("canary", 5, 20.0),
            _variant("mirror", 4, 0.0, shadow=True),
        ],
    )
    outputs = _deploy(fake, tmp_path, weight=10)

    [(method, path, body)] = _writes(fake)
    assert (method, path) == ("PUT", f"{BASE}/churn")
    assert body["reason"] == f"deployed by job {JOB} task deploy"
    # 90% shared 80:20; the shadow untouched; no resolved fields sent back.
    assert body["variants"] == [
        _variant("champion", 3, 72.0),
        _variant("canary", 5, 18.0),
        _variant("mirror", 4, 0.0, shadow=True),
        _variant("challenger", 7, 10.0),
    ]
    assert outputs["config_version"] == 2
    assert outputs["created"] is False
    assert outputs["weight"] == 10.0


def test_redeploying_a_variant_replaces_it(fake: FakeServingPlatform, tmp_path: Path) -> None:
    fake.add_deployment("churn", [_variant("champion", 3, 90.0), _variant("challenger", 6, 10.0)])
    _deploy(fake, tmp_path, weight=50)
    [(_, _, body)] = _writes(fake)
    assert body["variants"] == [_variant("champion", 3, 50.0), _variant("challenger", 7, 50.0)]
    assert [v["resolved"]["model_version"] for v in fake.deployments["churn"]["variants"]] == [3, 7]


def test_a_shadow_replaces_the_other_shadow_and_changes_no_weight(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    fake.add_deployment(
        "churn",
        [
            _variant("champion", 3, 70.0),
            _variant("challenger", 5, 30.0),
            _variant("old-shadow", 4, 0.0, shadow=True),
        ],
    )
    outputs = _deploy(fake, tmp_path, variant="shadow", shadow=True)
    [(_, _, body)] = _writes(fake)
    assert body["variants"] == [
        _variant("champion", 3, 70.0),
        _variant("challenger", 5, 30.0),
        _variant("shadow", 7, 0.0, shadow=True),
    ]
    assert outputs["weight"] == 0.0


def test_weight_100_leaves_the_others_at_zero(fake: FakeServingPlatform, tmp_path: Path) -> None:
    fake.add_deployment("churn", [_variant("champion", 3, 100.0)])
    _deploy(fake, tmp_path, variant="next", weight=100)
    [(_, _, body)] = _writes(fake)
    assert body["variants"] == [_variant("champion", 3, 0.0), _variant("next", 7, 100.0)]


def test_without_create_a_missing_deployment_fails_and_nothing_is_written(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    with pytest.raises(ServingTaskError, match="does not exist"):
        _deploy(fake, tmp_path, create=False)
    assert _writes(fake) == []


def test_a_shadow_alone_cannot_create_a_deployment(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    with pytest.raises(ServingTaskError, match="shadow alone"):
        _deploy(fake, tmp_path, shadow=True)
    assert _writes(fake) == []


def test_the_registration_must_be_a_direct_upstream_task(
    fake: FakeServingPlatform, tmp_path: Path
) -> None:
    with pytest.raises(ServingTaskError, match="direct upstream task"):
        run_deploy(
            {"registration": "register", "deployment": "churn"},
            {},
            fake.context(tmp_path, "deploy"),
        )
    assert fake.calls == []


def test_a_deployment_left_without_an_answering_variant_is_refused() -> None:
    current = [_variant("only", 1, 100.0)]
    shadow = {**_variant("only", 2, 0.0, shadow=True)}
    with pytest.raises(ServingTaskError, match="no variant that answers"):
        scaled_variants(current, shadow, weight=0.0)
