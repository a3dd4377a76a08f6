"""Cross-validation and the grid / random hyperparameter search built on it."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, ParameterGrid, ParameterSampler, StratifiedKFold

from armillary.contracts.training import Problem, Search, Trial
from armillary.sdk.task_log import TaskLog

from . import story
from .metrics import default_metric, is_better, score, summarise
from .progress import Progress
from .tabular import TrainingError

PipelineFactory = Callable[[Mapping[str, Any]], Any]


def splitter(problem: Problem, folds: int, *, stratify: bool, seed: int) -> KFold | StratifiedKFold:
    if problem == "classification" and stratify:
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return KFold(n_splits=folds, shuffle=True, random_state=seed)


def cross_validate(
    make: Callable[[], Any],
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    problem: Problem,
    cv: KFold | StratifiedKFold,
    on_fold: Callable[[int, int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """The metrics of a fresh pipeline (``make()``) fitted on each training fold and scored on
    the fold left out."""
    if len(y) < cv.get_n_splits():
        raise TrainingError(f"{len(y)} rows cannot be split into {cv.get_n_splits()} folds")
    results: list[dict[str, float]] = []
    total = cv.get_n_splits()
    try:
        splits = list(cv.split(x, y))
    except ValueError as exc:  # e.g. a class with fewer members than folds
        raise TrainingError(f"cannot split the rows into folds: {exc}") from None
    for number, (train, test) in enumerate(splits, start=1):
        model = make().fit(x[train], y[train])
        results.append(score(model, x[test], y[test], problem))
        if on_fold is not None:
            on_fold(number, total, results[-1])
    return results


def candidates(search: Search, seed: int) -> list[dict[str, Any]]:
    """The hyperparameter sets to try: the whole grid (refused beyond ``max_trials``) or
    ``trials`` random draws (fewer when the space is smaller)."""
    space = {name: list(values) for name, values in search.space.items()}
    if search.method == "grid":
        grid = ParameterGrid(space)
        if len(grid) > search.max_trials:
            raise TrainingError(
                f"the grid has {len(grid)} combinations, more than max_trials "
                f"({search.max_trials}): shrink it or use a random search"
            )
        return [dict(p) for p in grid]
    size = len(ParameterGrid(space))
    draws = ParameterSampler(space, n_iter=min(search.trials, size), random_state=seed)
    return [dict(p) for p in draws]


def run_search(
    make: PipelineFactory,
    x: np.ndarray[Any, Any],
    y: np.ndarray[Any, Any],
    problem: Problem,
    search: Search,
    *,
    stratify: bool,
    seed: int,
    progress: Progress,
    log: TaskLog | None = None,
) -> tuple[dict[str, Any], list[Trial]]:
    """Cross-validates every candidate on ``x``/``y``; returns the best one's hyperparameters
    and every trial (a trial whose fit failed is recorded without metrics). Each trial is a
    line of ``log``."""
    log = log or TaskLog("train")
    metric = search.metric or default_metric(problem)
    cv = splitter(problem, search.folds, stratify=stratify, seed=seed)
    sets = candidates(search, seed)
    story.search_plan(log, search, len(sets), len(y), metric)
    trials: list[Trial] = []
    best: int | None = None
    for number, hyper in enumerate(sets, start=1):
        error: str | None = None
        try:
            folds = cross_validate(functools.partial(make, hyper), x, y, problem, cv)
            means, _ = summarise(folds)
        except TrainingError:
            raise
        except Exception as exc:  # one bad combination must not end the search
            error = f"{type(exc).__name__}: {exc}"
            means = {}
        trials.append(Trial(number=number, hyperparameters=hyper, metrics=means))
        story.trial(log, trials[-1], len(sets), metric, error)
        incumbent = trials[best].metrics.get(metric) if best is not None else None
        if is_better(metric, means.get(metric), incumbent):
            best = len(trials) - 1
        progress(stage="search", current=number, total=len(sets), metrics=means)
    if best is None:
        raise TrainingError(f"no search trial produced a {metric} score")
    trials[best] = trials[best].model_copy(update={"best": True})
    story.best(log, trials[best], metric)
    return trials[best].hyperparameters, trials
