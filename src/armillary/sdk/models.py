"""Registered models: list, inspect, search and compare versions, move aliases, lineage."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import ArmillaryError
from .transfer import MultipartFile

if TYPE_CHECKING:
    from .client import Client

_PAGE_SIZE = 100


def _segment(value: str | int) -> str:
    # Names are path segments: a "/" or "%" in one must not change the route.
    return quote(str(value), safe="")


class Models:
    """``client.models``: the model registry API of a :class:`~armillary.sdk.Client`."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def _base(self, project: str) -> str:
        return f"/api/v1/projects/{_segment(project)}/models"

    def _model(self, project: str, model: str) -> str:
        return f"{self._base(project)}/{_segment(model)}"

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self._client.request("GET", path, params=params).json()

    def _pages(self, path: str, params: dict[str, Any] | None = None) -> Iterator[Any]:
        offset = 0
        while True:
            page = self._get(path, {**(params or {}), "limit": _PAGE_SIZE, "offset": offset})
            items = page["items"]
            yield from items
            offset += len(items)
            if not items or offset >= page["total"]:
                return

    def list(self, project: str) -> builtins.list[dict[str, Any]]:
        """Every registered model of ``project`` (by slug)."""
        return builtins.list(self._pages(self._base(project)))

    def get(self, project: str, model: str) -> dict[str, Any]:
        """One model, with its latest version and its aliases."""
        result: dict[str, Any] = self._get(self._model(project, model))
        return result

    def versions(
        self, project: str, model: str, *, order_by: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        """A model's versions; ``order_by`` e.g. ``metrics.f1`` (best first) or ``version``."""
        params = {"order_by": order_by} if order_by else None
        return builtins.list(self._pages(f"{self._model(project, model)}/versions", params))

    def version(self, project: str, model: str, version: int) -> dict[str, Any]:
        """One version: metrics, parameters, signature, artifacts, lineage."""
        result: dict[str, Any] = self._get(f"{self._model(project, model)}/versions/{version}")
        return result

    def compare(self, project: str, model: str, versions: Sequence[int]) -> dict[str, Any]:
        """Versions side by side: metrics, the parameters that differ, training data."""
        result: dict[str, Any] = self._get(
            f"{self._model(project, model)}/compare",
            {"versions": ",".join(str(v) for v in versions)},
        )
        return result

    def create(self, project: str, model: str, description: str = "") -> dict[str, Any]:
        """Register a model name; raises :class:`ArmillaryError` 409 if it is taken."""
        body = {"name": model, "description": description}
        result: dict[str, Any] = self._client.request("POST", self._base(project), json=body).json()
        return result

    def upload(
        self,
        project: str,
        model: str,
        path: str | Path,
        *,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        description: str = "",
        create: bool = True,
    ) -> dict[str, Any]:
        """Upload a model trained elsewhere as the next version: an ONNX or skops file only
        (the server reads the format from the content and refuses pickle/joblib)."""
        if create:
            try:
                self.create(project, model)
            except ArmillaryError as exc:
                if exc.status != 409:  # the model exists already: fine
                    raise
        fields = {
            "metrics": json.dumps(dict(metrics or {})),
            "params": json.dumps(dict(params or {})),
            "description": description,
        }
        multipart = MultipartFile(Path(path), fields)
        response = self._client._send(
            "POST",
            f"{self._model(project, model)}/versions/upload",
            body=lambda: multipart,
            headers=multipart.headers,
        )
        result: dict[str, Any] = response.json()
        return result

    def lineage(self, project: str, model: str, version: int) -> dict[str, Any]:
        """The graph model version <- job <- workflow version <- dataset versions."""
        path = f"{self._model(project, model)}/versions/{version}/lineage"
        result: dict[str, Any] = self._get(path)
        return result

    def set_alias(
        self, project: str, model: str, alias: str, version: int, reason: str
    ) -> dict[str, Any]:
        """Point ``alias`` at ``version``; the move is recorded with ``reason``."""
        path = f"{self._model(project, model)}/aliases/{_segment(alias)}"
        body = {"version": version, "reason": reason}
        result: dict[str, Any] = self._client.request("PUT", path, json=body).json()
        return result

    def alias_history(self, project: str, model: str, alias: str) -> builtins.list[dict[str, Any]]:
        """Every move of ``alias``: who, when, why, from which version to which."""
        path = f"{self._model(project, model)}/aliases/{_segment(alias)}/history"
        return builtins.list(self._pages(path))
