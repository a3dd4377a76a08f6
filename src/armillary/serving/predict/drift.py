"""Drift of each variant's inputs (ADR 0032): the rows of the latest sampled requests, kept
per variant in memory, against the training reference its model version was registered with.
Every ``drift_interval_seconds`` the serving process sets, per variant, the PSI of each
feature and the largest of them.

Each serving process measures the requests it sampled itself; its window holds the last
``drift_window_rows`` rows. A variant whose version has no reference (uploaded without one),
or with fewer than ``drift_min_rows`` sampled rows, reports nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import ValidationError

from armillary.contracts.drift import DriftReference
from armillary.kit.drift import feature_psi

from . import metrics

log = structlog.get_logger("armillary.serving.drift")

References = Callable[[str], dict[str, Any] | None]


@dataclass
class _Window:
    model_version_id: str
    features: list[str]
    rows: deque[list[Any]]


@dataclass
class DriftWindows:
    """The latest sampled rows of each (deployment label, variant)."""

    size: int
    min_rows: int
    windows: dict[tuple[str, str], _Window] = field(default_factory=dict)
    _reported: set[tuple[str, str, str]] = field(default_factory=set)

    def add(
        self, deployment: str, variant: str, model_version_id: str, features: list[str], rows: Any
    ) -> None:
        """Keep a sampled request's rows (in ``features`` order). A variant now serving
        another model version starts a new window."""
        key = (deployment, variant)
        window = self.windows.get(key)
        if window is None or window.model_version_id != model_version_id:
            window = _Window(model_version_id, list(features), deque(maxlen=self.size))
            self.windows[key] = window
        for row in rows:
            window.rows.append(list(row))

    def compute(self, references: References) -> dict[tuple[str, str], dict[str, float]]:
        """Set the PSI gauges of every variant with a reference and enough rows; returns
        them by (deployment, variant)."""
        found: dict[tuple[str, str], dict[str, float]] = {}
        for (deployment, variant), window in list(self.windows.items()):
            reference = _reference(references(window.model_version_id))
            if reference is None or len(window.rows) < self.min_rows:
                continue
            scores: dict[str, float] = {}
            for index, name in enumerate(window.features):
                spec = reference.features.get(name)
                if spec is None:
                    continue
                score = feature_psi(spec, [row[index] for row in window.rows])
                if score is not None:
                    scores[name] = score
            if scores:
                found[(deployment, variant)] = scores
        self._publish(found)
        return found

    def _publish(self, found: dict[tuple[str, str], dict[str, float]]) -> None:
        reported: set[tuple[str, str, str]] = set()
        for (deployment, variant), scores in found.items():
            for name, score in scores.items():
                metrics.DRIFT_PSI.labels(deployment, variant, name).set(score)
                reported.add((deployment, variant, name))
            metrics.DRIFT_PSI_MAX.labels(deployment, variant).set(max(scores.values()))
        # Series of variants (or features) no longer measured go away.
        for gone in self._reported - reported:
            with contextlib.suppress(KeyError):
                metrics.DRIFT_PSI.remove(*gone)
        for deployment, variant in {(d, v) for d, v, _ in self._reported} - set(found):
            with contextlib.suppress(KeyError):
                metrics.DRIFT_PSI_MAX.remove(deployment, variant)
        self._reported = reported


def _reference(value: dict[str, Any] | None) -> DriftReference | None:
    if not value:
        return None
    try:
        return DriftReference.model_validate(value)
    except ValidationError:
        return None


async def run_periodically(windows: DriftWindows, references: References, interval: float) -> None:
    """Compute drift every ``interval`` seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            # PSI over a few thousand values per feature: short, but off the event loop.
            await asyncio.to_thread(windows.compute, references)
        except Exception:  # the loop must outlive one bad round
            log.exception("serving.drift_failed")
