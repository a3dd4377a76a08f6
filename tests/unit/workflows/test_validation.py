"""Spec validation: one case per error kind, each with the exact path of the field at fault."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from armillary.workflows.specs.validation import ErrorKind, validate_spec

DIAMOND: dict[str, Any] = {
    "name": "diamond",
    "description": "a -> (b, c) -> d",
    "parameters": {"rows": 100, "label": "x"},
    "schedule": {"cron": "0 3 * * *", "catchup": "catch_up", "max_catchup_runs": 5},
    "tasks": [
        {"name": "a", "type": "sleep", "params": {"seconds": 0}},
        {
            "name": "b",
            "type": "python",
            "params": {
                "source": "def main(**kw):\n    return {'total': 1}\n",
                "args": {"slept": "${tasks.a.outputs.seconds}", "rows": "${params.rows}"},
            },
            "needs": ["a"],
            "outputs": ["total"],
            "retries": 2,
            "timeout_seconds": 60,
            "cache": True,
        },
        {"name": "c", "type": "noop", "params": {"values": {"k": 1}}, "needs": ["a"]},
        {
            "name": "d",
            "type": "sleep",
            # A reference stands for any value, even where the schema wants a number.
            "params": {"seconds": "${tasks.b.outputs.total}"},
            "needs": ["b", "c"],
        },
    ],
}


def spec(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(DIAMOND)
    document.update(changes)
    return document


def errors_of(document: Any) -> list[tuple[str, ErrorKind]]:
    return [(e.path, e.kind) for e in validate_spec(document).errors]


def test_a_valid_diamond_passes() -> None:
    result = validate_spec(DIAMOND)
    assert result.errors == []
    assert result.spec is not None
    assert [t.name for t in result.spec.tasks] == ["a", "b", "c", "d"]
    assert result.spec.schedule is not None
    assert result.spec.schedule.catchup == "catch_up"


def test_unknown_task_type() -> None:
    document = spec()
    document["tasks"][2]["type"] = "teleport"
    result = validate_spec(document)
    assert [(e.path, e.kind) for e in result.errors] == [
        ("tasks[2].type", ErrorKind.UNKNOWN_TASK_TYPE)
    ]
    assert result.spec is None
    assert "teleport" in result.errors[0].message


def test_params_that_do_not_fit_the_schema() -> None:
    document = spec()
    document["tasks"][0]["params"] = {"seconds": -1, "extra": True}
    assert errors_of(document) == [
        ("tasks[0].params.seconds", ErrorKind.INVALID_PARAMS),
        ("tasks[0].params.extra", ErrorKind.INVALID_PARAMS),
    ]


def test_a_missing_required_param() -> None:
    document = spec()
    document["tasks"][0]["params"] = {}
    assert errors_of(document) == [("tasks[0].params.seconds", ErrorKind.INVALID_PARAMS)]


def test_python_needs_exactly_one_of_source_and_bundle() -> None:
    document = spec()
    document["tasks"][1]["params"]["bundle"] = "etl"
    result = validate_spec(document)
    assert [(e.path, e.kind) for e in result.errors] == [
        ("tasks[1].params", ErrorKind.INVALID_PARAMS)
    ]
    assert "exactly one" in result.errors[0].message


def test_a_nested_param_error_has_its_nested_path() -> None:
    document = spec()
    document["tasks"][1]["params"]["args"] = ["not", "a", "dict"]
    assert errors_of(document) == [("tasks[1].params.args", ErrorKind.INVALID_PARAMS)]


def test_a_cycle_is_named() -> None:
    document = spec()
    document["tasks"][0]["needs"] = ["d"]
    result = validate_spec(document)
    # a -> d closes two cycles, through each branch of the diamond.
    assert [(e.path, e.kind, e.message) for e in result.errors] == [
        ("tasks[1].needs[0]", ErrorKind.CYCLE, "tasks form a cycle: a -> d -> b -> a"),
        ("tasks[2].needs[0]", ErrorKind.CYCLE, "tasks form a cycle: a -> d -> c -> a"),
    ]


def test_a_task_that_needs_itself_is_a_cycle() -> None:
    document = spec()
    document["tasks"][2]["needs"] = ["a", "c"]
    assert errors_of(document) == [("tasks[2].needs[1]", ErrorKind.CYCLE)]


def test_needs_naming_a_missing_task() -> None:
    document = spec()
    document["tasks"][3]["needs"] = ["b", "ghost", "c"]
    assert errors_of(document) == [("tasks[3].needs[1]", ErrorKind.MISSING_DEPENDENCY)]


def test_duplicate_task_names() -> None:
    document = spec()
    document["tasks"].append({"name": "b", "type": "noop"})
    assert errors_of(document) == [("tasks[4].name", ErrorKind.DUPLICATE_TASK)]


def test_a_bad_cron_expression() -> None:
    document = spec(schedule={"cron": "61 * * * *"})
    assert errors_of(document) == [("schedule.cron", ErrorKind.INVALID_CRON)]


def test_a_reference_to_an_output_the_upstream_task_lacks() -> None:
    document = spec()
    document["tasks"][3]["params"]["seconds"] = "${tasks.b.outputs.nothing}"
    result = validate_spec(document)
    assert [(e.path, e.kind) for e in result.errors] == [
        ("tasks[3].params.seconds", ErrorKind.UNKNOWN_OUTPUT)
    ]
    assert "total" in result.errors[0].message  # lists what the task does output


def test_a_reference_to_a_fixed_output_of_a_typed_task() -> None:
    document = spec()
    document["tasks"][1]["params"]["args"]["slept"] = "${tasks.a.outputs.minutes}"
    assert errors_of(document) == [("tasks[1].params.args.slept", ErrorKind.UNKNOWN_OUTPUT)]


def test_a_reference_to_a_task_that_is_not_upstream() -> None:
    document = spec()
    document["tasks"][2]["params"]["values"] = {"k": "${tasks.b.outputs.total}"}
    result = validate_spec(document)
    assert [(e.path, e.kind) for e in result.errors] == [
        ("tasks[2].params.values.k", ErrorKind.UNKNOWN_OUTPUT)
    ]
    assert "not upstream" in result.errors[0].message


def test_a_reference_to_a_task_that_does_not_exist() -> None:
    document = spec()
    document["tasks"][3]["params"]["seconds"] = "${tasks.ghost.outputs.total}"
    assert errors_of(document) == [("tasks[3].params.seconds", ErrorKind.UNKNOWN_OUTPUT)]


def test_a_reference_to_an_undefined_parameter() -> None:
    document = spec()
    document["tasks"][1]["params"]["args"]["rows"] = "${params.columns}"
    assert errors_of(document) == [("tasks[1].params.args.rows", ErrorKind.UNKNOWN_PARAMETER)]


def test_a_malformed_reference() -> None:
    document = spec()
    document["tasks"][1]["params"]["args"]["rows"] = ["${params}"]
    assert errors_of(document) == [("tasks[1].params.args.rows[0]", ErrorKind.MALFORMED_REFERENCE)]


def test_only_dynamic_types_declare_outputs() -> None:
    document = spec()
    document["tasks"][0]["outputs"] = ["seconds"]
    document["tasks"][1]["outputs"] = ["total", "total"]
    assert errors_of(document) == [
        ("tasks[0].outputs", ErrorKind.INVALID_OUTPUTS),
        ("tasks[1].outputs[1]", ErrorKind.INVALID_OUTPUTS),
    ]


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"name": "Not A Slug"}, "name"),
        ({"tasks": []}, "tasks"),
        ({"schedule": {"cron": "* * * * *", "max_catchup_runs": 101}}, "schedule.max_catchup_runs"),
        ({"schedule": {"cron": "* * * * *", "catchup": "sometimes"}}, "schedule.catchup"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_the_document_shape(change: dict[str, Any], path: str) -> None:
    assert errors_of(spec(**change)) == [(path, ErrorKind.SCHEMA)]


def test_task_fields_have_bounds() -> None:
    document = spec()
    document["tasks"][1]["retries"] = 11
    document["tasks"][2]["timeout_seconds"] = 0
    document["tasks"].append({"name": "E", "type": "noop"})
    # b and c are still known: d's needs and references to them are no further errors.
    assert errors_of(document) == [
        ("tasks[1].retries", ErrorKind.SCHEMA),
        ("tasks[2].timeout_seconds", ErrorKind.SCHEMA),
        ("tasks[4].name", ErrorKind.SCHEMA),
    ]


def test_not_a_mapping() -> None:
    assert errors_of(["a", "list"]) == [("", ErrorKind.SCHEMA)]
    assert errors_of(None) == [("", ErrorKind.SCHEMA)]


def test_every_error_is_reported_at_once() -> None:
    document = spec(schedule={"cron": "nope"})
    document["tasks"][0]["type"] = "teleport"
    document["tasks"][3]["needs"] = ["b", "c", "ghost"]
    document["tasks"][1]["retries"] = -1
    document["tasks"].append({"name": "c", "type": "noop"})
    kinds = {kind for _path, kind in errors_of(document)}
    assert kinds == {
        ErrorKind.SCHEMA,
        ErrorKind.INVALID_CRON,
        ErrorKind.UNKNOWN_TASK_TYPE,
        ErrorKind.MISSING_DEPENDENCY,
        ErrorKind.DUPLICATE_TASK,
    }


def test_server_checks_are_listed_as_skipped() -> None:
    document = spec()
    document["tasks"][1]["params"] = {"bundle": "etl", "entrypoint": "jobs.run"}
    result = validate_spec(document)
    assert result.errors == []
    assert [(s.path, s.check) for s in result.skipped] == [
        ("tasks[1].params.bundle", "code bundle exists in the project")
    ]


def test_a_data_task_reads_only_upstream_tables() -> None:
    from pydantic import BaseModel, ConfigDict

    from armillary.contracts.tasks import TASK_TYPES, NoOutputs, TaskTypeContract

    class JoinParams(BaseModel):
        model_config = ConfigDict(extra="forbid")
        inputs: list[str]

    join = TaskTypeContract(
        name="join",
        description="reads tables",
        params=JoinParams,
        outputs=NoOutputs,
        input_params=("inputs",),
    )
    types = {**TASK_TYPES, "join": join}
    spec = {
        "name": "pipe",
        "tasks": [
            {"name": "a", "type": "noop"},
            {"name": "b", "type": "noop"},
            {"name": "j", "type": "join", "params": {"inputs": ["a", "b"]}, "needs": ["a"]},
        ],
    }
    result = validate_spec(spec, types)
    assert [(e.path, e.kind) for e in result.errors] == [
        ("tasks[2].params.inputs[1]", ErrorKind.INPUT_NOT_UPSTREAM)
    ]
    spec["tasks"][2]["needs"] = ["a", "b"]
    assert validate_spec(spec, types).ok


@pytest.mark.parametrize(
    ("task_type", "params"),
    [
        ("python", {"source": "def main():\n    return {}\n"}),
        ("transform", {"sql": "select 1"}),
        ("ingest", {"dataset": "d", "source": {"url": "https://example.com/a.csv"}}),
        ("sleep", {"seconds": 0}),
    ],
)
def test_in_process_is_refused_for_any_type_but_noop(task_type: str, params: Any) -> None:
    """User code (and anything but the trusted built-ins) always runs in a sandbox (ADR 0047)."""
    document = {
        "name": "w",
        "tasks": [
            {"name": "user-code", "type": task_type, "params": params, "isolation": "in_process"}
        ],
    }
    errors = validate_spec(document).errors
    refused = [e for e in errors if e.kind == ErrorKind.ISOLATION_NOT_ALLOWED]
    assert [e.path for e in refused] == ["tasks[0].isolation"]
    assert "'user-code'" in refused[0].message
    assert f"'{task_type}'" in refused[0].message


def test_noop_may_run_in_process_and_sandbox_is_the_default() -> None:
    document = {
        "name": "w",
        "tasks": [
            {"name": "a", "type": "noop", "isolation": "in_process"},
            {"name": "b", "type": "python", "params": {"source": "def main():\n  return {}\n"}},
        ],
    }
    result = validate_spec(document)
    assert result.ok, result.errors
    assert result.spec is not None
    assert [t.isolation for t in result.spec.tasks] == ["in_process", "sandbox"]
    assert errors_of({**document, "tasks": [{"name": "a", "type": "noop", "isolation": "vm"}]})
