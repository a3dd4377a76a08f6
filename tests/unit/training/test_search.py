"""Grid and random search: how many trials, refusals, every trial recorded, the best picked."""

from __future__ import annotations

from typing import Any

import pytest
from sklearn.datasets import load_iris

from armillary.contracts.training import Preprocessing, Search
from armillary.training.estimators import build_pipeline
from armillary.training.progress import Progress
from armillary.training.search import candidates, run_search
from armillary.training.tabular import TrainingError


def test_a_grid_tries_every_combination_and_refuses_beyond_max_trials() -> None:
    search = Search(space={"max_depth": [1, 2, 3], "criterion": ["gini", "entropy"]})
    assert len(candidates(search, 0)) == 6
    with pytest.raises(TrainingError, match="more than max_trials"):
        candidates(search.model_copy(update={"max_trials": 5}), 0)


def test_a_random_search_draws_trials_reproducibly() -> None:
    space = {"max_depth": list(range(1, 20)), "min_samples_leaf": [1, 2, 4, 8]}
    search = Search(method="random", space=space, trials=7)
    drawn = candidates(search, 3)
    assert len(drawn) == 7
    assert drawn == candidates(search, 3)
    assert drawn != candidates(search, 4)
    # A space smaller than `trials` is tried once per combination.
    small = Search(method="random", space={"max_depth": [1, 2]}, trials=10)
    assert len(candidates(small, 0)) == 2


class _Recorder(Progress):
    def __init__(self) -> None:
        super().__init__(None)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


def test_every_trial_is_recorded_and_the_best_wins() -> None:
    x, y = load_iris(return_X_y=True)

    def make(extra: Any) -> Any:
        return build_pipeline(
            "DecisionTreeClassifier",
            extra,
            n_features=4,
            categorical=[],
            preprocessing=Preprocessing(),
            seed=0,
        )

    # max_depth 1 can separate only two of three classes: it must lose; "bad" cannot fit.
    search = Search(space={"max_depth": [1, 4], "criterion": ["gini", "bad"]}, metric="accuracy")
    progress = _Recorder()
    best, trials = run_search(
        make, x, y, "classification", search, stratify=True, seed=0, progress=progress
    )
    assert len(trials) == 4
    assert [t.number for t in trials] == [1, 2, 3, 4]
    assert [t.best for t in trials].count(True) == 1
    assert best == {"criterion": "gini", "max_depth": 4}
    failed = [t for t in trials if t.hyperparameters["criterion"] == "bad"]
    assert all(t.metrics == {} for t in failed)
    assert [c["current"] for c in progress.calls] == [1, 2, 3, 4]
    assert {c["stage"] for c in progress.calls} == {"search"}
