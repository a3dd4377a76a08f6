"""Discoverable task parameters: the spec's JSON Schema lists the task types and the allowed
estimators as enums, each estimator with its hyperparameters (types and ranges taken from
scikit-learn's own constraints); a misspelt name in a spec gets "did you mean ...?"."""

from __future__ import annotations

import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from armillary.contracts.hyperparameters import estimator_hyperparameters
from armillary.contracts.tasks import TASK_TYPES
from armillary.contracts.training import ESTIMATORS
from armillary.workflows.specs.schema import spec_json_schema
from armillary.workflows.specs.validation import ErrorKind, validate_spec


@cache
def validator() -> jsonschema.Draft202012Validator:
    schema = spec_json_schema(TASK_TYPES)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def train_spec(**params: Any) -> dict[str, Any]:
    return {
        "name": "fit",
        "parameters": {"estimator": "SVC", "c": 1.0},
        "tasks": [
            {"name": "load", "type": "noop", "outputs": ["rows"]},
            {
                "name": "train",
                "type": "train",
                "needs": ["load"],
                "params": {"input": "load", "target": "y", **params},
            },
        ],
    }


def schema_errors(document: dict[str, Any]) -> list[str]:
    return [error.message for error in validator().iter_errors(document)]


def test_the_estimators_are_an_enum_in_the_params_schema() -> None:
    schema = TASK_TYPES["train"].params.model_json_schema()
    assert schema["properties"]["estimator"]["enum"] == sorted(ESTIMATORS)
    by_estimator = {
        rule["if"]["properties"]["estimator"]["const"]: rule["then"] for rule in schema["allOf"]
    }
    assert set(by_estimator) == set(ESTIMATORS)


def test_hyperparameter_ranges_come_from_scikit_learn() -> None:
    from sklearn.ensemble import RandomForestClassifier

    forest = estimator_hyperparameters()["RandomForestClassifier"]
    assert forest["additionalProperties"] is False
    (interval,) = RandomForestClassifier._parameter_constraints["n_estimators"]
    assert forest["properties"]["n_estimators"] == {
        "type": "integer",
        "minimum": interval.left,
        "default": 100,
    }
    assert forest["properties"]["criterion"]["enum"] == ["entropy", "gini", "log_loss"]
    # A tree depth is a positive integer or None (unbounded).
    depth_types = {o["type"] for o in forest["properties"]["max_depth"]["anyOf"]}
    assert depth_types == {"integer", "null"}
    # Constraints only an object meets (a callable kernel) are not offered to a spec.
    assert estimator_hyperparameters()["SVC"]["properties"]["kernel"]["enum"] == [
        "linear",
        "poly",
        "precomputed",
        "rbf",
        "sigmoid",
    ]


def test_the_spec_schema_lists_the_task_types() -> None:
    schema = spec_json_schema(TASK_TYPES)
    assert schema["$defs"]["TaskSpec"]["properties"]["type"]["enum"] == sorted(TASK_TYPES)
    assert schema_errors({"name": "x", "tasks": [{"name": "a", "type": "trian"}]})


@pytest.mark.parametrize(
    "params",
    [
        {"estimator": "RandomForestClassifier", "hyperparameters": {"n_estimators": 10}},
        {"estimator": "SVC", "search": {"space": {"C": [0.1, 1.0]}}},
        # References stand for any value, even where the schema wants a number or an enum.
        {"estimator": "${params.estimator}", "hyperparameters": {"C": 1.0}},
        {"estimator": "SVC", "hyperparameters": {"C": "${params.c}"}},
    ],
)
def test_a_valid_train_task_fits_the_schema(params: dict[str, Any]) -> None:
    assert schema_errors(train_spec(**params)) == []
    assert validate_spec(train_spec(**params)).errors == []


@pytest.mark.parametrize(
    "params",
    [
        {"estimator": "RandomForestClasifier"},
        {"estimator": "RandomForestClassifier", "hyperparameters": {"n_estimators": 0}},
        {"estimator": "RandomForestClassifier", "hyperparameters": {"n_estimatorz": 10}},
        {"estimator": "SVC", "hyperparameters": {"kernel": "cubic"}},
        {"estimator": "SVC", "search": {"space": {"gama": ["scale"]}}},
    ],
)
def test_the_schema_refuses_what_validation_refuses(params: dict[str, Any]) -> None:
    assert schema_errors(train_spec(**params))
    assert [e.kind for e in validate_spec(train_spec(**params)).errors] == [
        ErrorKind.INVALID_PARAMS
    ]


def message_at(document: dict[str, Any], path: str) -> str:
    (message,) = [e.message for e in validate_spec(document).errors if e.path == path]
    return message


def test_a_misspelt_estimator_gets_a_suggestion() -> None:
    message = message_at(train_spec(estimator="RandomForestClasifier"), "tasks[1].params")
    assert "did you mean 'RandomForestClassifier'?" in message


def test_a_misspelt_hyperparameter_gets_a_suggestion() -> None:
    document = train_spec(estimator="SVC", hyperparameters={"gama": "scale"})
    assert "did you mean 'gamma'?" in message_at(document, "tasks[1].params")


def test_a_misspelt_task_type_gets_a_suggestion() -> None:
    document = train_spec(estimator="SVC")
    document["tasks"][1]["type"] = "trian"
    assert "did you mean 'train'?" in message_at(document, "tasks[1].type")


def test_a_misspelt_needed_task_gets_a_suggestion() -> None:
    document = train_spec(estimator="SVC")
    document["tasks"][1]["needs"] = ["laod"]
    assert "did you mean 'load'?" in message_at(document, "tasks[1].needs[0]")


def test_no_suggestion_when_nothing_is_close() -> None:
    document = train_spec(estimator="SVC")
    document["tasks"][1]["type"] = "zzz"
    assert "did you mean" not in message_at(document, "tasks[1].type")


def test_nothing_imports_scikit_learn_at_start_up(tmp_path: Path) -> None:
    """The schema imports the estimators' libraries on demand: neither the server app nor
    its OpenAPI document import them."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from armillary.app import create_app\n"
        "from armillary.kit.settings import Settings\n"
        f"home = Path({str(tmp_path)!r})\n"
        "settings = Settings(home=home, secret_key='k' * 48, admin_password='p' * 20)\n"
        "create_app(settings, configure_logs=False).openapi()\n"
        "assert 'sklearn' not in sys.modules, 'sklearn imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
