"""How each signature input is fed to a model, and the checks of one value against it.

Rows reach a model as one 2-D array in signature order, exactly as training built it:
``float64`` when every feature is numeric, else an ``object`` array with numbers as floats
(missing: NaN), and strings and booleans as themselves (missing: ``None``). A JSON ``null`` is
a missing value, taken only where the signature says the model takes one (``nullable``) or its
pipeline fills one in (``imputed``: training's imputer and category encoders); elsewhere it is
refused, naming the row and column, rather than handed to a model that would answer nonsense.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from armillary.contracts.training import Signature
from armillary.kit.lazy_import import lazy
from armillary.kit.tabular import is_numeric

from .errors import BadInput

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

#: Rows one request may carry unless the caller says otherwise.
DEFAULT_MAX_ROWS = 10_000


class Kind(enum.Enum):
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"


def kind_of(dtype: str) -> Kind:
    """The kind of value a feature of this (Polars) dtype takes; training supports only
    numeric, boolean and string/categorical features."""
    if is_numeric(dtype):
        return Kind.NUMBER
    if dtype.lower() == "boolean":
        return Kind.BOOLEAN
    return Kind.STRING


@dataclass(frozen=True)
class Columns:
    """The signature's inputs, ready for decoding."""

    names: tuple[str, ...]
    kinds: tuple[Kind, ...]
    index: dict[str, int]
    numeric: bool  # every feature is a number: the matrix is float64
    takes_null: tuple[bool, ...]  # per feature: nullable or imputed
    refuses_null: tuple[int, ...]  # the features that take no null, by position

    @classmethod
    def of(cls, signature: Signature) -> Columns:
        names = tuple(f.name for f in signature.inputs)
        kinds = tuple(kind_of(f.dtype) for f in signature.inputs)
        index = {n: i for i, n in enumerate(names)}
        takes_null = tuple(f.nullable or f.imputed for f in signature.inputs)
        refuses_null = tuple(i for i, takes in enumerate(takes_null) if not takes)
        numeric = all(k is Kind.NUMBER for k in kinds)
        return cls(names, kinds, index, numeric, takes_null, refuses_null)

    def listing(self, limit: int = 12) -> str:
        """The feature names for a message, shortened when there are many."""
        shown = ", ".join(self.names[:limit])
        more = len(self.names) - limit
        return shown + (f", … ({more} more)" if more > 0 else "")


_KNOWN: dict[int, tuple[Signature, Columns]] = {}
_KNOWN_LIMIT = 256


def columns_of(signature: Signature) -> Columns:
    """:meth:`Columns.of`, remembered per signature object: a loaded model keeps its
    signature, and working the columns out again costs more than decoding a row."""
    known = _KNOWN.get(id(signature))
    if known is not None and known[0] is signature:
        return known[1]
    columns = Columns.of(signature)
    if len(_KNOWN) >= _KNOWN_LIMIT:
        _KNOWN.clear()
    # The entry holds the signature, so its id cannot be reused while the entry exists.
    _KNOWN[id(signature)] = (signature, columns)
    return columns


def describe(value: Any) -> str:
    """What a JSON value is, in words for a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def check_row_count(n: int, max_rows: int, where: str) -> None:
    if n == 0:
        raise BadInput(f"{where} is empty: send at least one row")
    if n > max_rows:
        raise BadInput(f"{where} has {n} rows; at most {max_rows} are allowed per request")


def null_refused(where: str, column: str) -> BadInput:
    """The problem of a null where the model takes no missing value."""
    return BadInput(
        f"{where} (column {column!r}) is null, but the model takes no missing value there: "
        "its signature marks the column neither nullable nor imputed"
    )


def cell(value: Any, kind: Kind, column: str, where: str, takes_null: bool = True) -> Any:
    """``value`` as the model takes it in an object matrix, or :class:`BadInput`."""
    if value is None and not takes_null:
        raise null_refused(where, column)
    kind_type = type(value)
    if kind is Kind.NUMBER:
        if kind_type is float:
            if math.isinf(value):
                raise BadInput(f"{where} (column {column!r}) must be a finite number")
            return value
        if kind_type is int:
            try:
                return float(value)
            except OverflowError:
                raise BadInput(f"{where} (column {column!r}) is too large a number") from None
        if value is None:
            return math.nan
        raise BadInput(f"{where} (column {column!r}) must be a number, got {describe(value)}")
    if value is None:
        return None
    if kind is Kind.BOOLEAN:
        if kind_type is bool:
            return value
        raise BadInput(f"{where} (column {column!r}) must be a boolean, got {describe(value)}")
    if kind_type is str:
        return value
    raise BadInput(f"{where} (column {column!r}) must be a string, got {describe(value)}")


def numeric_matrix(
    rows: Sequence[Sequence[Any]],
    names: Sequence[str],
    where: str,
    refuses_null: Sequence[int] = (),
) -> np.ndarray[Any, Any]:
    """The float64 matrix of ``rows`` (each already of ``len(names)`` values, unchecked): only
    numbers (not booleans) and nulls pass, nulls only outside ``refuses_null`` (positions);
    the first offender is named."""
    for r, row in enumerate(rows):
        for c, value in enumerate(row):
            value_type = type(value)
            if value_type is not float and value_type is not int and value is not None:
                raise BadInput(
                    f"{where}[{r}] (column {names[c]!r}) must be a number, got {describe(value)}"
                )
    try:
        matrix = np.array(rows, dtype=np.float64)
    except OverflowError:
        raise BadInput(f"{where} holds a number too large for a 64-bit float") from None
    # One pass on the common path: JSON has no NaN, so a NaN here was a null.
    if not np.isfinite(matrix).all():
        infinite = np.isinf(matrix)
        if infinite.any():
            r, c = (int(i) for i in np.argwhere(infinite)[0])
            raise BadInput(f"{where}[{r}] (column {names[c]!r}) must be a finite number")
        if refuses_null:
            refused = list(refuses_null)
            nulls = np.argwhere(np.isnan(matrix[:, refused]))
            if len(nulls):
                r, j = (int(i) for i in nulls[0])
                raise null_refused(f"{where}[{r}]", names[refused[j]])
    return matrix


def object_matrix(
    rows: Sequence[Sequence[Any]], columns: Columns, where: str
) -> np.ndarray[Any, Any]:
    """The object matrix of ``rows`` (each already of the right length, unchecked)."""
    matrix = np.empty((len(rows), len(columns.names)), dtype=object)
    triples = tuple(zip(columns.kinds, columns.names, columns.takes_null, strict=True))
    for r, row in enumerate(rows):
        at = f"{where}[{r}]"
        matrix[r, :] = [cell(v, k, n, at, t) for v, (k, n, t) in zip(row, triples, strict=True)]
    return matrix


def matrix_of(rows: Sequence[Sequence[Any]], columns: Columns, where: str) -> np.ndarray[Any, Any]:
    """The matrix of positional ``rows`` in signature order, float64 or object as training
    built it."""
    if columns.numeric:
        return numeric_matrix(rows, columns.names, where, columns.refuses_null)
    return object_matrix(rows, columns, where)
