"""The contracts of ``deploy`` and ``batch_predict``: what a spec may say, and what it may not,
with the message a user sees; the event's routing key."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from armillary.contracts.serving import (
    BATCH_PREDICT,
    DEPLOY,
    SERVING_TASK_TYPES,
    BatchPredictParams,
    DeploymentChanged,
    DeployOutputs,
    DeployParams,
)


def _deploy(**changes: Any) -> dict[str, Any]:
    return {"registration": "register", "deployment": "churn", **changes}


def _batch(**changes: Any) -> dict[str, Any]:
    return {"input": "load", "dataset": "scored", "deployment": "churn", **changes}


def test_deploy_defaults_to_a_challenger_at_ten_percent_created_if_missing() -> None:
    params = DeployParams.model_validate(_deploy())
    assert (params.variant, params.weight, params.shadow, params.create) == (
        "challenger",
        10.0,
        False,
        True,
    )


@pytest.mark.parametrize("weight", [100, 0.5, 50])
def test_deploy_takes_a_weight_up_to_one_hundred(weight: float) -> None:
    assert DeployParams.model_validate(_deploy(weight=weight)).weight == weight


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"weight": 0}, "greater than 0"),
        ({"weight": -5}, "greater than 0"),
        ({"weight": 100.5}, "less than or equal to 100"),
        ({"variant": "Champion"}, "should match pattern"),
        ({"variant": ""}, "should match pattern"),
        ({"deployment": "../etc"}, "should match pattern"),
        ({"registration": "Register"}, "should match pattern"),
        ({"replicas": 3}, "Extra inputs are not permitted"),
    ],
)
def test_deploy_refuses_bad_params(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeployParams.model_validate(_deploy(**changes))


def test_deploy_registration_is_missing() -> None:
    with pytest.raises(ValidationError, match="registration"):
        DeployParams.model_validate({"deployment": "churn"})


def test_deploy_outputs_carry_the_config_version_and_the_version_deployed() -> None:
    out = DeployOutputs(
        deployment="churn",
        config_version=3,
        variant="challenger",
        model="m",
        model_version=2,
        weight=10.0,
    )
    assert out.model_dump()["config_version"] == 3
    with pytest.raises(ValidationError):
        DeployOutputs(
            deployment="churn",
            config_version=0,
            variant="c",
            model="m",
            model_version=1,
            weight=1.0,
        )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"deployment": None, "model": "churn-clf", "version": 3},
        {"deployment": None, "model": "churn-clf", "alias": "champion"},
        {"keep_columns": ["id", "age"], "probabilities": False, "batch_rows": 1},
    ],
)
def test_batch_predict_takes_a_deployment_or_a_model_version_or_alias(
    changes: dict[str, Any],
) -> None:
    params = BatchPredictParams.model_validate(_batch(**changes))
    assert params.input == "load"
    assert params.batch_rows >= 1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"deployment": None}, "exactly one of `deployment` or `model`"),
        ({"model": "churn-clf", "version": 1}, "exactly one of `deployment` or `model`"),
        ({"version": 2}, "apply to a `model`, not to a `deployment`"),
        ({"alias": "champion"}, "apply to a `model`, not to a `deployment`"),
        ({"deployment": None, "model": "m"}, "exactly one of `version` or `alias`"),
        (
            {"deployment": None, "model": "m", "version": 1, "alias": "champion"},
            "exactly one of `version` or `alias`",
        ),
        ({"deployment": None, "model": "m", "version": 0}, "greater than or equal to 1"),
        ({"keep_columns": ["a", "a"]}, "must not name a column twice"),
        ({"keep_columns": ["prediction"]}, "output column"),
        ({"keep_columns": ["proba_1"]}, "output column"),
        ({"batch_rows": 0}, "greater than or equal to 1"),
        ({"dataset": "a/b"}, "should match pattern"),
        ({"input": "Load"}, "should match pattern"),
        ({"format": "csv"}, "Extra inputs are not permitted"),
    ],
)
def test_batch_predict_refuses_bad_params(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BatchPredictParams.model_validate(_batch(**changes))


def test_the_task_types_name_their_upstream_inputs() -> None:
    assert SERVING_TASK_TYPES == {"deploy": DEPLOY, "batch_predict": BATCH_PREDICT}
    # The workflow validator checks these name tasks upstream of the task.
    assert DEPLOY.input_params == ("registration",)
    assert BATCH_PREDICT.input_params == ("input",)
    assert DEPLOY.params is DeployParams
    assert BATCH_PREDICT.params is BatchPredictParams


def test_deployment_changed_is_routed_by_its_type() -> None:
    event = DeploymentChanged(
        project_id="6f1d8c38-8d0f-4e8e-9a51-3d1a3b0b7f00",  # type: ignore[arg-type]
        deployment_id="0d9b2f6c-2b1e-4a31-8f8b-2f4c1f1d6a11",  # type: ignore[arg-type]
        name="churn",
        config_version=4,
    )
    assert DeploymentChanged.TYPE == "serving.deployment_changed"
    assert event.model_dump(mode="json")["config_version"] == 4
