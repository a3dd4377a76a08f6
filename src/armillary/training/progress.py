"""Progress of a training attempt, shown on the job while it runs; never a reason to fail."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from armillary.sdk.task_api import TaskApi


class Progress:
    """Reports through ``api`` (None: nowhere); a failed report is a line on stderr."""

    def __init__(self, api: TaskApi | None) -> None:
        self._api = api

    def __call__(
        self,
        *,
        stage: str,
        current: int | None = None,
        total: int | None = None,
        message: str = "",
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        if self._api is None:
            return
        try:
            self._api.report_progress(
                stage=stage, current=current, total=total, message=message, metrics=metrics
            )
        except Exception as exc:  # progress is best effort by design
            print(f"[train] progress not shown ({stage}): {exc}", file=sys.stderr)

    def report(self, update: Mapping[str, Any]) -> None:
        """The same, from a mapping (``stage``, ``current``, ``total``, ``message``,
        ``metrics``), as the SageMaker backend reports."""
        current, total, metrics = update.get("current"), update.get("total"), update.get("metrics")
        self(
            stage=str(update.get("stage", "train")),
            current=current if isinstance(current, int) else None,
            total=total if isinstance(total, int) else None,
            message=str(update.get("message", "")),
            metrics=metrics if isinstance(metrics, Mapping) else None,
        )
