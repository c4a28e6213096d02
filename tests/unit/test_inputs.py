"""Raw rows encoded with a version's plan, and its input schema (zootrain.inputs)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from zootrain.inputs import RowError, encode_records, input_schema, split_to_records
from zootrain.spec import EncodingPlan, FeatureEncoding
from zootrain.views import PredictRequest

PLAN = EncodingPlan(
    target="species",
    target_kind="text",
    target_encoding="labels",
    features=[
        FeatureEncoding(column="length", encoding="numeric"),
        FeatureEncoding(column="color", encoding="onehot", levels=["blue", "red"]),
        FeatureEncoding(column="wild", encoding="boolean"),
        FeatureEncoding(column="size", encoding="onehot", levels=["1", "2", "L"]),
    ],
)


def test_schema_names_types_and_categories() -> None:
    schema = input_schema(PLAN)
    assert [(c.name, c.type, c.categories) for c in schema] == [
        ("length", "number", None),
        ("color", "category", ["blue", "red"]),
        ("wild", "boolean", None),
        ("size", "category", ["1", "2", "L"]),
    ]


def test_records_encode_in_plan_order_like_the_training() -> None:
    rows = encode_records(
        PLAN,
        [
            {"length": 5.1, "color": "red", "wild": True, "size": "L"},
            # Column order does not matter; extra columns (the target, an id) are ignored;
            # an integer code matches its text level, as pandas read it.
            {"size": 2, "wild": False, "color": "blue", "length": 3, "species": "x", "id": 7},
        ],
    )
    assert PLAN.encoded_features == [
        "length", "color=blue", "color=red", "wild", "size=1", "size=2", "size=L"
    ]  # fmt: skip
    assert rows == [
        [5.1, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
        [3.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    ]


GOOD = {"length": 1.0, "color": "red", "wild": True, "size": "1"}


@pytest.mark.parametrize(
    ("change", "column", "words"),
    [
        ({"color": "green"}, "color", "unknown category 'green'"),
        ({"length": "5.1"}, "length", "expects a number"),
        ({"length": True}, "length", "expects a number"),
        ({"wild": 1}, "wild", "expects true or false"),
        ({"color": 3.5}, "color", "expects a category"),
        ({"color": None}, "color", "is null"),
        ({"size": True}, "size", "expects a category"),
    ],
)
def test_a_bad_value_names_its_row_and_column(change: dict, column: str, words: str) -> None:
    with pytest.raises(RowError) as caught:
        encode_records(PLAN, [GOOD, {**GOOD, **change}])
    assert caught.value.where == f"records[1], column {column!r}"
    assert words in str(caught.value)


def test_a_missing_column_names_its_row_and_column() -> None:
    row = {k: v for k, v in GOOD.items() if k != "wild"}
    with pytest.raises(RowError, match=r"records\[0\], column 'wild': missing"):
        encode_records(PLAN, [row])


def test_dataframe_split_is_mlflow_columns_and_data() -> None:
    records = split_to_records(["color", "length", "wild", "size"], [["red", 2.5, False, "2"]])
    assert records == [{"color": "red", "length": 2.5, "wild": False, "size": "2"}]
    assert encode_records(PLAN, records, field="dataframe_split.data") == [
        [2.5, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]
    ]
    with pytest.raises(RowError, match=r"dataframe_split.data\[1\]: has 1 values for 2 columns"):
        split_to_records(["a", "b"], [[1, 2], [1]])
    with pytest.raises(RowError, match="named twice"):
        split_to_records(["a", "a"], [[1, 2]])
    with pytest.raises(RowError, match=r"dataframe_split.data\[0\], column 'color': unknown"):
        encode_records(
            PLAN,
            split_to_records(["color", "length", "wild", "size"], [["mauve", 1, True, "1"]]),
            field="dataframe_split.data",
        )


def test_predict_request_takes_exactly_one_input() -> None:
    assert PredictRequest.model_validate({"instances": [[1.0]]}).rows == 1
    assert PredictRequest.model_validate({"records": [GOOD, GOOD]}).rows == 2
    split = {"columns": ["a"], "data": [[1], [2], [3]], "index": [0, 1, 2]}
    assert PredictRequest.model_validate({"dataframe_split": split}).rows == 3
    for body in (
        {},
        {"instances": [[1.0]], "records": [GOOD]},
        {"records": [GOOD], "version": 1, "alias": "champion"},
        {"records": [GOOD], "alias": "Not An Alias"},
        {"records": [{"color": {"nested": 1}}]},
    ):
        with pytest.raises(ValidationError):
            PredictRequest.model_validate(body)
    # JSON types survive: true stays a boolean, 1 an integer, "1" a string.
    parsed = PredictRequest.model_validate_json('{"records": [{"a": true, "b": 1, "c": "1"}]}')
    assert parsed.records == [{"a": True, "b": 1, "c": "1"}]
    assert type(parsed.records[0]["b"]) is int
