"""Reading versions side by side: ordering by a metric, comparing, and the reverse lineage."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.authz import ProjectAccess
from armillary.kit.errors import BadRequest, NotFound
from armillary.kit.ids import parse_uuid
from armillary.kit.pagination import MAX_PARAM_INT

from ..catalog.service import get_model
from ..components import Registry
from . import repository as repo
from .models import ModelVersion
from .schemas import Comparison, DatasetUse

_METRIC = re.compile(r"^metrics\.([A-Za-z0-9_.-]{1,64})$")
MAX_COMPARED = 20
ORDER_HELP = (
    "`version` (default), `created_at` or `metrics.<name>`: largest first; a leading `-` "
    "reverses (`-metrics.rmse`: smallest rmse first). Versions without the metric come last."
)


def order_clause(order_by: str | None) -> list[Any]:
    raw = (order_by or "version").strip()
    ascending = raw.startswith("-")
    key = raw[1:] if ascending else raw
    column: Any
    if key == "version":
        column = ModelVersion.number
    elif key == "created_at":
        column = ModelVersion.created_at
    elif match := _METRIC.fullmatch(key):
        column = ModelVersion.metrics[match.group(1)].as_float()
    else:
        raise BadRequest(f"order_by: {ORDER_HELP}")
    primary = column.asc() if ascending else column.desc()
    return [primary.nulls_last(), ModelVersion.number.desc()]


def parse_numbers(versions: str) -> list[int]:
    numbers: list[int] = []
    for part in versions.split(","):
        part = part.strip()
        # ASCII only ('²' is a digit to isdigit()), and within what the database holds.
        if not (part.isascii() and part.isdigit()) or not 1 <= int(part) <= MAX_PARAM_INT:
            raise BadRequest("versions: a comma-separated list of version numbers, e.g. 1,2,3")
        if int(part) not in numbers:
            numbers.append(int(part))
    if not 1 <= len(numbers) <= MAX_COMPARED:
        raise BadRequest(f"versions: compare 1 to {MAX_COMPARED} versions")
    return numbers


async def compare(
    session: AsyncSession, access: ProjectAccess, ref: str, numbers: list[int]
) -> Comparison:
    model = await get_model(session, access, ref)
    found = await repo.by_numbers(session, model.id, numbers)
    missing = [n for n in numbers if n not in found]
    if missing:
        raise NotFound(f"Model version(s) not found: {', '.join(map(str, missing))}")
    versions = [found[n] for n in numbers]
    used = await repo.datasets_of(session, [v.id for v in versions])
    metric_names = sorted({name for v in versions for name in v.metrics})
    param_names = sorted({name for v in versions for name in v.params})
    differing = {
        name: [v.params.get(name) for v in versions]
        for name in param_names
        if len({json.dumps(v.params.get(name), sort_keys=True, default=str) for v in versions}) > 1
    }
    return Comparison(
        model=model.name,
        versions=numbers,
        estimators=[v.estimator for v in versions],
        metrics={name: [v.metrics.get(name) for v in versions] for name in metric_names},
        params=differing,
        datasets=[
            [
                DatasetUse(
                    dataset_id=d.dataset_id,
                    dataset=d.dataset_name,
                    version=d.dataset_version,
                    sha256=d.sha256,
                    role=d.role,
                )
                for d in used.get(v.id, [])
            ]
            for v in versions
        ],
    )


async def dataset_id_of(
    registry: Registry, access: ProjectAccess, dataset: str, version: int
) -> Any:
    """The dataset's id: given, or from the data service (None when it no longer knows the
    version: then the name recorded at registration is matched)."""
    given = parse_uuid(dataset)
    if given is not None or registry.datasets is None:
        return given
    answer = await registry.datasets.dataset_version(
        access.principal.token, str(access.project_id), dataset, version
    )
    return parse_uuid(str((answer or {}).get("dataset_id", "")))
