"""Experiment runs in Armillary's API: list and compare an experiment's runs (sorted and
filtered by metric or param), one run, a metric's history, the parallel-coordinates export."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from .client import Client

_PAGE_SIZE = 200


def _segment(value: str) -> str:
    return quote(value, safe="")


class Runs:
    """``client.runs``: the tracking service's own API (MLflow's is for MLflow's client)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._client.request("GET", path, params=params).json()

    def list(
        self,
        project: str,
        experiment: str,
        *,
        filter: str | None = None,
        order_by: Sequence[str] = (),
        limit: int | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Runs of ``experiment`` (name or id), filtered (``metrics.acc > 0.9``) and ordered
        (``metrics.acc DESC``) with MLflow's search grammar; newest first by default."""
        path = f"/api/v1/projects/{_segment(project)}/experiments/{_segment(experiment)}/runs"
        found: builtins.list[dict[str, Any]] = []
        offset = 0
        while limit is None or len(found) < limit:
            size = _PAGE_SIZE if limit is None else min(_PAGE_SIZE, limit - len(found))
            params: dict[str, Any] = {"limit": size, "offset": offset, "order_by": list(order_by)}
            if filter:
                params["filter"] = filter
            page = self._get(path, params)
            found += page["items"]
            if page["next_offset"] is None:
                break
            offset = page["next_offset"]
        return found

    def get(self, project: str, run_id: str) -> dict[str, Any]:
        """One run: attributes, its job and task, params, latest metrics and tags."""
        result: dict[str, Any] = self._get(
            f"/api/v1/projects/{_segment(project)}/runs/{_segment(run_id)}"
        )
        return result

    def history(self, project: str, run_id: str, key: str) -> builtins.list[dict[str, Any]]:
        """Every point of metric ``key``, in the order logged (``step``, ``value``,
        ``timestamp``)."""
        path = (
            f"/api/v1/projects/{_segment(project)}/runs/{_segment(run_id)}"
            f"/metrics/{_segment(key)}/history"
        )
        points: builtins.list[dict[str, Any]] = []
        after = 0
        while True:
            page = self._get(path, {"after": after})
            points += page["points"]
            if page["next_after"] is None:
                return points
            after = page["next_after"]

    def export(
        self,
        project: str,
        experiment: str,
        *,
        params: Sequence[str] = (),
        metrics: Sequence[str] = (),
        filter: str | None = None,
        order_by: Sequence[str] = (),
        limit: int = 1000,
    ) -> dict[str, Any]:
        """Parallel coordinates: ``columns`` (``run_id``, ``run_name``, ``params.*``,
        ``metrics.*``) and ``rows``; ``params``/``metrics`` choose the columns (none: all)."""
        path = (
            f"/api/v1/projects/{_segment(project)}/experiments/{_segment(experiment)}/runs/export"
        )
        query: dict[str, Any] = {
            "params": list(params),
            "metrics": list(metrics),
            "order_by": list(order_by),
            "limit": limit,
        }
        if filter:
            query["filter"] = filter
        result: dict[str, Any] = self._get(path, query)
        return result
