"""The hyperparameters of each allow-listed estimator as JSON Schema, for editors and tools.

Derived from scikit-learn's own ``_parameter_constraints`` (the ones ``train`` already checks
a spec against), so the published types and ranges cannot drift from the check. Building it
imports every estimator's library, so it is done on first use and cached; nothing imports
scikit-learn at start-up.
"""

from __future__ import annotations

import math
from functools import cache
from numbers import Integral, Real
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .training import EstimatorInfo

Schema = dict[str, Any]

# A spec's hyperparameter values are JSON scalars (``HyperValue``): constraints that only an
# object satisfies (a callable, an array, a dict of class weights) are not offered.
_RANDOM_STATE: Schema = {"type": "integer", "minimum": 0, "maximum": 2**32 - 1}


@cache
def estimator_hyperparameters() -> dict[str, Schema]:
    """Estimator name -> JSON Schema of its ``hyperparameters`` object."""
    from .training import ESTIMATORS

    return {name: _object_schema(info) for name, info in sorted(ESTIMATORS.items())}


def _object_schema(info: EstimatorInfo) -> Schema:
    from .training import estimator_class

    try:
        cls = estimator_class(info)
    except ValueError as exc:  # an optional package that is not installed
        return {"type": "object", "description": str(exc)}
    defaults = cls().get_params(deep=False)
    constraints: dict[str, list[Any]] = getattr(cls, "_parameter_constraints", {})
    properties: dict[str, Schema] = {}
    for name in sorted(defaults):
        if name in constraints:
            schema = _parameter_schema(constraints[name])
            if schema is None:
                continue  # only objects satisfy it
        else:
            schema = {}  # a library without declared constraints (XGBoost, LightGBM)
        default = defaults[name]
        if _is_json_scalar(default):
            schema["default"] = default
        properties[name] = schema
    return {"type": "object", "properties": properties, "additionalProperties": False}


def _parameter_schema(constraints: list[Any]) -> Schema | None:
    from sklearn.utils._param_validation import Hidden, make_constraint

    options: list[Schema] = []
    for constraint in constraints:
        if isinstance(constraint, Hidden):
            continue  # deprecated or internal: scikit-learn does not advertise it either
        option = _constraint_schema(make_constraint(constraint))
        if option is not None and option not in options:
            options.append(option)
    if not options:
        return None
    return dict(options[0]) if len(options) == 1 else {"anyOf": options}


def _constraint_schema(constraint: Any) -> Schema | None:
    from sklearn.utils._param_validation import (
        Interval,
        Options,
        _Booleans,
        _InstancesOf,
        _NoneConstraint,
        _RandomStates,
        _VerboseHelper,
    )

    if isinstance(constraint, Interval):
        return _interval_schema(constraint)
    if isinstance(constraint, Options):
        allowed = sorted(constraint.options - constraint.deprecated, key=str)
        return {"enum": allowed} if all(_is_json_scalar(o) for o in allowed) else None
    if isinstance(constraint, _Booleans):
        return {"type": "boolean"}
    if isinstance(constraint, _NoneConstraint):
        return {"type": "null"}
    if isinstance(constraint, _RandomStates):
        return {"anyOf": [_RANDOM_STATE, {"type": "null"}]}
    if isinstance(constraint, _VerboseHelper):
        return {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "boolean"}]}
    if isinstance(constraint, _InstancesOf):
        return _type_schema(constraint.type)
    return None


def _interval_schema(interval: Any) -> Schema:
    schema: Schema = {"type": "integer" if interval.type is Integral else "number"}
    if interval.left is not None and math.isfinite(interval.left):
        key = "minimum" if interval.closed in ("left", "both") else "exclusiveMinimum"
        schema[key] = interval.left
    if interval.right is not None and math.isfinite(interval.right):
        key = "maximum" if interval.closed in ("right", "both") else "exclusiveMaximum"
        schema[key] = interval.right
    return schema


def _type_schema(kind: type) -> Schema | None:
    if issubclass(kind, bool):
        return {"type": "boolean"}
    if issubclass(kind, Integral):
        return {"type": "integer"}
    if issubclass(kind, Real):
        return {"type": "number"}
    if issubclass(kind, str):
        return {"type": "string"}
    return None


def _is_json_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, str | int | bool)
