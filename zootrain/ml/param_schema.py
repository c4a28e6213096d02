"""JSON Schemas of each algorithm's ``params``: what the job spec's ``params`` may hold.

They are generated from scikit-learn's own parameter constraints (``_parameter_constraints``,
the table its ``_validate_params`` checks) narrowed by zootrain's rules (zootrain.ml.algorithms:
the parameters zootrain sets itself, its ceilings, values a JSON request cannot carry and the
checks it adds). The result is committed as ``param_schemas.json`` next to this module, so that
reading it needs no scikit-learn (the job service's OpenAPI document is built from it), and
tests/unit/test_param_schema.py regenerates it and fails when scikit-learn or zootrain's rules
changed without it: ``python -m zootrain.ml.param_schema`` (``make openapi``) rewrites it.

A schema says what one value may be, never how parameters combine (``max_samples`` needs
``bootstrap``, a solver that takes no l1 penalty): those checks stay in validate_params, so a
value the schema allows may still be refused, but a value it refuses always is.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources
from typing import Any

Schema = dict[str, Any]

TABLE = "param_schemas.json"

# These mirror zootrain.ml.algorithms (MAX_LIST_LENGTH, MAX_STRING_LENGTH), which imports
# scikit-learn; the unit test checks they agree.
MAX_LIST_LENGTH = 500

_NON_NEGATIVE_LIST: Schema = {
    "type": "array",
    "maxItems": MAX_LIST_LENGTH,
    "items": {"type": "number", "minimum": 0},
}

# zootrain's reading of scikit-learn's "array-like" for each parameter that takes one: a flat
# JSON list, shaped by the checks zootrain.ml.algorithms adds (None: zootrain refuses a list).
_ARRAY_LIKE: dict[tuple[str, str], Schema | None] = {
    **{
        (forest, "monotonic_cst"): {
            "type": "array",
            "maxItems": MAX_LIST_LENGTH,
            "items": {"type": "integer", "enum": [-1, 0, 1]},
            "description": "One of -1, 0, 1 per feature.",
        }
        for forest in (
            "random_forest_classifier",
            "random_forest_regressor",
            "extra_trees_classifier",
            "extra_trees_regressor",
        )
    },
    ("ridge", "alpha"): {**_NON_NEGATIVE_LIST, "minItems": 1, "maxItems": 1},
    ("gaussian_nb", "priors"): _NON_NEGATIVE_LIST,
    ("multinomial_nb", "alpha"): _NON_NEGATIVE_LIST,
    ("multinomial_nb", "class_prior"): _NON_NEGATIVE_LIST,
    ("kmeans", "init"): None,  # initial centers are not taken: 'k-means++' or 'random'
}

# Values of a parameter that scikit-learn takes and zootrain refuses (algorithms' checks).
_REFUSED: dict[tuple[str, str], list[Any]] = {
    ("linear_regression", "positive"): [True],  # shards merge by the unconstrained equations
    ("ridge", "positive"): [True],
    ("ridge", "solver"): ["lbfgs"],  # scikit-learn takes lbfgs only with positive=true
}


def load() -> dict[str, Schema]:
    """The committed table: algorithm name -> JSON Schema of its ``params`` (no scikit-learn)."""
    return _load()


@cache
def _load() -> dict[str, Schema]:
    text = resources.files(__package__).joinpath(TABLE).read_text()
    table: dict[str, Schema] = json.loads(text)
    return table


def generate() -> dict[str, Schema]:
    """The table, computed afresh from scikit-learn and zootrain.ml.algorithms."""
    from zootrain.ml.algorithms import ALGORITHMS

    return {name: _params_schema(name, alg) for name, alg in ALGORITHMS.items()}


def dumps(table: dict[str, Schema]) -> str:
    return json.dumps(table, indent=2, sort_keys=True) + "\n"


def _params_schema(name: str, alg: Any) -> Schema:
    defaults = alg.default_params()
    controlled = sorted(p for p in alg.controlled if p in defaults)
    return {
        "title": f"{alg.estimator.__name__} parameters",
        "description": (
            f"Parameters of scikit-learn's {alg.estimator.__name__}, as zootrain accepts them; "
            f"zootrain sets {', '.join(controlled)} itself."
        ),
        "type": "object",
        "additionalProperties": False,
        "properties": {
            param: _param_schema(name, alg, param, defaults[param])
            for param in alg.accepted_params()
        },
    }


def _param_schema(algorithm: str, alg: Any, param: str, default: Any) -> Schema:
    from sklearn.utils._param_validation import Hidden

    constraints = alg.estimator._parameter_constraints[param]
    branches: list[Schema] = []
    for constraint in constraints:
        hidden = isinstance(constraint, Hidden)
        branch = _constraint_schema(
            algorithm, param, constraint.constraint if hidden else constraint
        )
        if branch is not None and branch not in branches:
            branches.append(_with_ceiling(branch, alg, param))
    branches = _merge_enums(branches, _REFUSED.get((algorithm, param), []))
    if not branches:
        raise ValueError(f"{algorithm}.{param}: no constraint a JSON value can meet")
    schema: Schema = branches[0] if len(branches) == 1 else {"anyOf": branches}
    if _json_value(default):
        schema = {**schema, "default": default}
    return schema


def _constraint_schema(algorithm: str, param: str, constraint: Any) -> Schema | None:
    """One scikit-learn constraint as a JSON Schema; None when no JSON value can meet it."""
    from numbers import Integral, Real

    from sklearn.utils._param_validation import (
        Interval,
        Options,
        RealNotInt,
        StrOptions,
        make_constraint,
    )

    if constraint is None:
        return {"type": "null"}
    if constraint == "boolean" or constraint is bool:
        return {"type": "boolean"}
    if constraint == "array-like":
        key = (algorithm, param)
        if key not in _ARRAY_LIKE:
            raise ValueError(f"{algorithm}.{param}: say in _ARRAY_LIKE what list it takes")
        return _ARRAY_LIKE[key]
    if isinstance(constraint, StrOptions):
        return {"type": "string", "enum": sorted(constraint.options)}
    if isinstance(constraint, Options):
        values = sorted(v for v in constraint.options if _json_value(v))
        return {"enum": values} if values else None
    if isinstance(constraint, Interval):
        kind = "integer" if constraint.type is Integral else "number"
        if constraint.type not in (Integral, Real, RealNotInt):
            raise ValueError(f"{algorithm}.{param}: unknown interval type {constraint.type}")
        schema: Schema = {"type": kind}
        closed_left = constraint.closed in ("left", "both")
        closed_right = constraint.closed in ("right", "both")
        if constraint.left is not None and math.isfinite(constraint.left):
            schema["minimum" if closed_left else "exclusiveMinimum"] = constraint.left
        if constraint.right is not None and math.isfinite(constraint.right):
            schema["maximum" if closed_right else "exclusiveMaximum"] = constraint.right
        return schema
    if constraint is callable or isinstance(constraint, type):
        # A Python object (a callable, a dict of class weights, a criterion instance): JSON
        # params hold numbers, strings, booleans, null and flat lists only.
        return None
    made = make_constraint(constraint)  # anything else scikit-learn knows: say so loudly
    raise ValueError(f"{algorithm}.{param}: no JSON Schema for {type(made).__name__}")


def _with_ceiling(branch: Schema, alg: Any, param: str) -> Schema:
    """zootrain's ceiling on a numeric parameter, on top of scikit-learn's bound: every integer
    has one (MAX_INTEGER), a float only where zootrain sets one."""
    from zootrain.ml.algorithms import ceiling_of

    if branch.get("type") not in ("integer", "number"):
        return branch
    integer = branch["type"] == "integer"
    ceiling = ceiling_of(alg, param, integer)
    if not math.isfinite(ceiling):
        return branch
    bounded = dict(branch)
    limit: float = int(ceiling) if integer else ceiling
    if "maximum" in bounded:
        bounded["maximum"] = min(bounded["maximum"], limit)
    elif "exclusiveMaximum" in bounded and bounded["exclusiveMaximum"] <= limit:
        pass
    else:
        bounded.pop("exclusiveMaximum", None)
        bounded["maximum"] = limit
    return bounded


def _merge_enums(branches: list[Schema], refused: list[Any]) -> list[Schema]:
    """One string enum for all string options (hidden ones too), without refused values; a
    boolean whose true is refused becomes false only."""
    strings = sorted(
        {v for b in branches if b.get("type") == "string" for v in b["enum"]} - set(refused)
    )
    merged: list[Schema] = []
    for branch in branches:
        if branch.get("type") == "string":
            if strings:
                merged.append({"type": "string", "enum": strings})
                strings = []
        elif branch == {"type": "boolean"} and True in refused:
            merged.append({"type": "boolean", "enum": [False]})
        else:
            merged.append(branch)
    return merged


def _json_value(value: Any) -> bool:
    """A plain JSON scalar (or null) a schema can state."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int | float) and type(value) in (int, float):
        return math.isfinite(value)
    return False


if __name__ == "__main__":
    print(dumps(generate()), end="")
