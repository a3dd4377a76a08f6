"""Pure rules of the registry: which datasets a job's lineage records, how rollback walks
back, and how model files are recognised without loading them."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest

from armillary.kit import model_files as kit_model_files
from armillary.kit.errors import Unprocessable
from armillary.registry.aliases.models import AliasMove
from armillary.registry.aliases.service import rollback_target
from armillary.registry.versions import model_files
from armillary.registry.versions.lineage import plan, upstream


def _task(name: str, type_: str, needs: list[str], dataset: Any = None) -> dict[str, Any]:
    outputs = {"dataset": dataset} if dataset is not None else {}
    return {"name": name, "type": type_, "needs": needs, "outputs": outputs}


JOB = {
    "workflow": "w",
    "workflow_id": "wid",
    "version": 2,
    "tasks": [
        _task("a", "ingest", [], {"name": "d1", "version": 1}),
        _task("b", "ingest", [], {"name": "d2", "version": 4}),
        _task("c", "transform", ["a", "b"]),
        _task("train", "train", ["c"]),
        _task("url", "ingest", []),  # no dataset (an http source)
        _task("h", "ingest", [], {"name": "d3", "version": 1}),
        _task("eval", "evaluate", ["train", "h", "url"]),
        _task("side", "ingest", [], {"name": "d9", "version": 1}),
    ],
}


def test_upstream_is_transitive_through_needs() -> None:
    tasks = {t["name"]: t for t in JOB["tasks"]}  # type: ignore[index]
    assert upstream(tasks, "train") == {"a", "b", "c"}
    assert upstream(tasks, "eval") == {"a", "b", "c", "train", "h", "url"}
    assert upstream(tasks, "a") == set()


def test_plan_records_training_and_evaluation_datasets_only() -> None:
    found = plan(JOB, "train", "eval")
    assert found.workflow == {"id": "wid", "name": "w", "version": 2}
    assert [(d.name, d.version, d.role) for d in found.datasets] == [
        ("d1", 1, "training"),
        ("d2", 4, "training"),
        ("d3", 1, "evaluation"),
    ]
    assert [d.name for d in plan(JOB, "train", None).datasets] == ["d1", "d2"]
    with pytest.raises(Unprocessable):
        plan(JOB, "missing", None)


def _moves(*spec: tuple[str, int | None]) -> list[AliasMove]:
    return [AliasMove(kind=kind, to_version=to) for kind, to in spec]


@pytest.mark.parametrize(
    ("moves", "target"),
    [
        ([("set", 1)], None),
        ([("set", 1), ("move", 2)], 1),
        ([("set", 1), ("move", 2), ("move", 3)], 2),
        ([("set", 1), ("move", 2), ("move", 3), ("rollback", 2)], 1),
        ([("set", 1), ("move", 2), ("rollback", 1)], None),
        ([("set", 1), ("move", 2), ("delete", None), ("set", 3)], None),
        ([("set", 1), ("move", 2), ("delete", None), ("set", 3), ("move", 1)], 3),
    ],
)
def test_rollback_walks_back_over_earlier_rollbacks(
    moves: list[tuple[str, int | None]], target: int | None
) -> None:
    assert rollback_target(_moves(*moves)) == target


def test_pickles_are_recognised_without_loading(tmp_path: Path) -> None:
    path = tmp_path / "m"
    for data in (pickle.dumps({"a": 1}, protocol=p) for p in (2, 3, 4, 5)):
        path.write_bytes(data)
        with pytest.raises(model_files.UnsupportedModelFile, match="Pickle"):
            model_files.detect_and_check(path)
    path.write_bytes(b"")
    with pytest.raises(model_files.UnsupportedModelFile):
        model_files.detect_and_check(path)


def test_a_named_model_file_is_checked_as_its_name_says(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"garbage that is no zip")
    with pytest.raises(model_files.UnsafeModelFile, match="skops"):
        model_files.check_named("model.skops", path)
    with pytest.raises(model_files.UnsafeModelFile, match="ONNX"):
        model_files.check_named("model.onnx", path)
    model_files.check_named("signature.json", path)  # not a model file: not checked here


def test_the_trusted_types_are_explicit() -> None:
    assert "builtins.eval" not in kit_model_files.TRUSTED_SKOPS_TYPES
    assert all(
        t.split(".")[0] in {"numpy", "scipy", "sklearn", "xgboost", "lightgbm", "collections"}
        for t in kit_model_files.TRUSTED_SKOPS_TYPES
    )
