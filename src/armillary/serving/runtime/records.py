"""The predict endpoint's request bodies: ``instances`` (records or lists) and MLflow's
``dataframe_split``, checked against the signature and turned into the model's matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from armillary.contracts.training import Signature
from armillary.kit.lazy_import import lazy

from .errors import BadInput
from .features import DEFAULT_MAX_ROWS, Columns, check_row_count, columns_of, describe, matrix_of

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

_FORMS = (
    'send {"instances": [{column: value, ...}, ...]}, {"instances": [[value, ...], ...]} '
    'or {"dataframe_split": {"columns": [...], "data": [[...], ...]}}'
)
_SPLIT_KEYS = frozenset({"columns", "data", "index"})


def decode_records(
    body: Any, signature: Signature, *, max_rows: int = DEFAULT_MAX_ROWS
) -> np.ndarray[Any, Any]:
    """The rows of a predict body in signature order (float64, or object with string or
    boolean features); :class:`BadInput` naming the row and column otherwise. Top-level keys
    other than ``instances`` / ``dataframe_split`` are the caller's (e.g. a routing key)."""
    if not isinstance(body, dict):
        raise BadInput(f"the body must be a JSON object: {_FORMS}")
    has_instances = "instances" in body
    has_split = "dataframe_split" in body
    if has_instances == has_split:
        which = "both" if has_instances else "neither"
        raise BadInput(f"the body has {which} of instances and dataframe_split: {_FORMS}")
    columns = columns_of(signature)
    if has_instances:
        return _instances(body["instances"], columns, max_rows)
    return _dataframe_split(body["dataframe_split"], columns, max_rows)


def _instances(instances: Any, columns: Columns, max_rows: int) -> np.ndarray[Any, Any]:
    if not isinstance(instances, list):
        raise BadInput(f"instances must be a list of rows, got {describe(instances)}")
    check_row_count(len(instances), max_rows, "instances")
    first = instances[0]
    if not isinstance(first, (dict, list)):
        raise BadInput(
            f"instances[0] must be an object of column: value or a list of values, "
            f"got {describe(first)}"
        )
    if isinstance(first, dict):
        rows = [_record(row, r, columns) for r, row in enumerate(instances)]
    else:
        width = len(columns.names)
        for r, row in enumerate(instances):
            if not isinstance(row, list):
                raise BadInput(
                    f"instances[{r}] must be a list like instances[0], got {describe(row)}"
                )
            if len(row) != width:
                raise BadInput(
                    f"instances[{r}] has {len(row)} values; the model takes {width} in this "
                    f"order: {columns.listing()}"
                )
        rows = instances
    return matrix_of(rows, columns, "instances")


def _record(row: Any, r: int, columns: Columns) -> list[Any]:
    if not isinstance(row, dict):
        raise BadInput(f"instances[{r}] must be an object like instances[0], got {describe(row)}")
    try:
        values = [row[name] for name in columns.names]
    except KeyError as missing:
        raise BadInput(f"instances[{r}] has no column {missing.args[0]!r}") from None
    if len(row) != len(values):
        extra = sorted(str(k) for k in row if k not in columns.index)
        raise BadInput(
            f"instances[{r}] has unknown column(s) {', '.join(map(repr, extra[:10]))}; "
            f"the model takes: {columns.listing()}"
        )
    return values


def _dataframe_split(split: Any, columns: Columns, max_rows: int) -> np.ndarray[Any, Any]:
    if not isinstance(split, dict):
        raise BadInput(f"dataframe_split must be an object, got {describe(split)}")
    unknown = sorted(str(k) for k in split if k not in _SPLIT_KEYS)
    if unknown:
        raise BadInput(
            f"dataframe_split has unknown key(s) {', '.join(map(repr, unknown))}; "
            "it takes columns, data and (ignored) index"
        )
    names = split.get("columns")
    data = split.get("data")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise BadInput("dataframe_split.columns must be a list of column names")
    if not isinstance(data, list):
        raise BadInput("dataframe_split.data must be a list of rows")
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise BadInput(f"dataframe_split.columns repeats {', '.join(map(repr, repeated))}")
    missing = [n for n in columns.names if n not in set(names)]
    if missing:
        raise BadInput(f"dataframe_split has no column(s) {', '.join(map(repr, missing[:10]))}")
    extra = [n for n in names if n not in columns.index]
    if extra:
        raise BadInput(
            f"dataframe_split has unknown column(s) {', '.join(map(repr, extra[:10]))}; "
            f"the model takes: {columns.listing()}"
        )
    check_row_count(len(data), max_rows, "dataframe_split.data")
    width = len(names)
    for r, row in enumerate(data):
        if not isinstance(row, list) or len(row) != width:
            got = f"{len(row)} values" if isinstance(row, list) else describe(row)
            raise BadInput(
                f"dataframe_split.data[{r}] must be a list of {width} values (one per "
                f"column), got {got}"
            )
    if tuple(names) != columns.names:
        order = [names.index(n) for n in columns.names]
        data = [[row[i] for i in order] for row in data]
    return matrix_of(data, columns, "dataframe_split.data")
