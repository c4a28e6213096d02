"""A model's input schema, and raw rows encoded with the plan its version was trained with.

A model trained on an uploaded dataset takes one-hot blocks and 0/1 booleans in the order of its
``EncodingPlan``; this module lets a caller send the table's own columns instead (``records``, or
MLflow's ``dataframe_split``) and encodes them exactly as the workers encoded the training rows
(zootrain.ml.tabular.encode_features), in pure Python: the job service imports neither numpy
nor pandas, and a row of a few columns takes tens of microseconds (about 30 for four columns,
one of them one-hot, on a loaded 2-core machine: 1,000 records in 29 ms).

Nothing is coerced silently. A JSON number is a number, ``true``/``false`` a boolean and a
string a category; a category outside the training set, a missing column or a value of the
wrong type is a ``RowError`` naming the row and the column, which the job service answers as a
422. The one leniency: an integer sent for a text column is matched by its decimal text, as
pandas read a column of codes such as ``"1"``, ``"2"``, ``"L"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from zootrain.spec import EncodingPlan, FeatureEncoding

InputType = Literal["number", "boolean", "category"]
_TYPES: dict[str, InputType] = {"numeric": "number", "boolean": "boolean", "onehot": "category"}


class InputColumn(BaseModel):
    """One column a raw row must hold."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    type: InputType = Field(
        description="number: a JSON number; boolean: true or false; category: one of categories"
    )
    categories: list[str] | None = Field(
        None, description="category: the values seen in training, one encoded feature each"
    )


class RowError(ValueError):
    """A raw row the plan cannot encode: ``where`` names the row and column."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


def input_schema(plan: EncodingPlan) -> list[InputColumn]:
    return [
        InputColumn(name=f.column, type=_TYPES[f.encoding], categories=f.levels)
        for f in plan.features
    ]


def split_to_records(
    columns: Sequence[str], data: Sequence[Sequence[Any]], *, field: str = "dataframe_split"
) -> list[dict[str, Any]]:
    """MLflow's ``dataframe_split`` (columns, and rows of values in that order) as records."""
    if len(set(columns)) != len(columns):
        repeated = next(c for c in columns if list(columns).count(c) > 1)
        raise RowError(f"{field}.columns", f"column {repeated!r} is named twice")
    records = []
    for row, values in enumerate(data):
        if len(values) != len(columns):
            raise RowError(
                f"{field}.data[{row}]",
                f"has {len(values)} values for {len(columns)} columns",
            )
        records.append(dict(zip(columns, values, strict=True)))
    return records


def encode_records(
    plan: EncodingPlan, records: Sequence[Mapping[str, Any]], *, field: str = "records"
) -> list[list[float]]:
    """Every record as the model's encoded feature vector (plan.encoded_features order).

    Columns the plan does not use (the target, an id) are ignored, as the training ignored them.
    """
    return [_encode(plan.features, record, f"{field}[{row}]") for row, record in enumerate(records)]


def _encode(features: list[FeatureEncoding], record: Mapping[str, Any], where: str) -> list[float]:
    encoded: list[float] = []
    for feature in features:
        at = f"{where}, column {feature.column!r}"
        if feature.column not in record:
            raise RowError(at, "missing (the model was trained on this column)")
        value = record[feature.column]
        if value is None:
            raise RowError(at, "is null; the model takes no missing values")
        match feature.encoding:
            case "numeric":
                encoded.append(_number(value, at))
            case "boolean":
                if not isinstance(value, bool):
                    raise RowError(at, f"expects true or false, got {_shown(value)}")
                encoded.append(1.0 if value else 0.0)
            case "onehot":
                encoded.extend(_one_hot(value, feature.levels or [], at))
    return encoded


def _number(value: Any, at: str) -> float:
    # bool is an int in Python, but true is not a length.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RowError(at, f"expects a number, got {_shown(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise RowError(at, "expects a finite number")
    return number


def _one_hot(value: Any, levels: list[str], at: str) -> list[float]:
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise RowError(at, f"expects a category (a string), got {_shown(value)}")
    if text not in levels:
        known = ", ".join(repr(level) for level in levels[:10])
        more = f" and {len(levels) - 10} more" if len(levels) > 10 else ""
        raise RowError(at, f"unknown category {_shown(text)}; known: {known}{more}")
    return [1.0 if level == text else 0.0 for level in levels]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
