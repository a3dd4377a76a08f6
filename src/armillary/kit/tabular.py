"""Tables as models see them: one 2-D array of the signature's inputs, in order.

Training builds its matrix this way and serving must build the same one (batch predictions),
so both call this: ``float64`` when every input is numeric, else ``object`` with numbers as
floats and strings and booleans as themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from armillary.kit.lazy_import import lazy

if TYPE_CHECKING:
    import numpy as np
    import polars as pl
else:
    np = lazy("numpy")
    pl = lazy("polars")


class Feature(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def dtype(self) -> str: ...


class MissingColumns(ValueError):
    """The table lacks some of the model's inputs."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing


def is_numeric(dtype: str | pl.DataType) -> bool:
    """Whether a column of this (Polars) dtype is fed to the model as a number."""
    if isinstance(dtype, str):
        return dtype.lower().startswith(("int", "uint", "float", "decimal"))
    return dtype.is_numeric()


def feature_matrix(frame: pl.DataFrame, features: Sequence[Feature]) -> np.ndarray[Any, Any]:
    """The 2-D array of ``features`` (in that order) from ``frame``; :class:`MissingColumns`
    when the frame lacks some."""
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise MissingColumns(missing)
    if all(is_numeric(f.dtype) for f in features):
        selected = frame.select([pl.col(f.name).cast(pl.Float64) for f in features])
        return selected.to_numpy().astype(np.float64, copy=False)
    matrix = np.empty((frame.height, len(features)), dtype=object)
    for index, feature in enumerate(features):
        column = frame.get_column(feature.name)
        if is_numeric(feature.dtype):
            matrix[:, index] = column.cast(pl.Float64).to_numpy()
        elif column.dtype == pl.Boolean:
            matrix[:, index] = column.to_list()
        else:
            matrix[:, index] = column.cast(pl.String).to_list()
    return matrix
