"""The submit checks kept by the job service (app.checked_specs): a spec is answered from the
table only when the child would have answered exactly the same."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from app.checked_specs import IGNORED, CheckedSpecs, question
from testkit.bench_specs import e2e_spec, search_spec, submit_spec, tiny_spec
from tests.support.specs import iris_spec
from zootrain.ml.cost import job_cost
from zootrain.ml.validation import validate_submission
from zootrain.spec import JobSpec

SPECS: list[dict[str, Any]] = [
    iris_spec(),
    submit_spec(),
    tiny_spec(),
    e2e_spec(2_000, 10),
    search_spec(1_000, 5),
    iris_spec(algorithm="kmeans", params={"n_clusters": 3}),
    iris_spec(algorithm="logistic_regression", params={"C": 0.5}, partition="auto"),
    iris_spec(
        dataset={"kind": "uploaded", "id": "0123456789abcdef0123", "target": "label"},
        algorithm="logistic_regression",
        params={},
    ),
]

# Every field the table ignores, set to values other than the specs' own.
OTHER_VALUES: dict[str, Any] = {
    "model_name": "some-other-model",
    "priority": 9,
    "time_limit": 60,
    "publish": {"alias": "champion", "if_better": True},
}


def _answer(spec: JobSpec) -> tuple[JobSpec, Any]:
    checked = validate_submission(spec)
    return checked, job_cost(checked)


def test_the_ignored_fields_are_fields_of_the_spec() -> None:
    assert set(JobSpec.model_fields) >= IGNORED
    assert set(OTHER_VALUES) == IGNORED


@pytest.mark.parametrize("raw", SPECS, ids=lambda s: f"{s['algorithm']}-{s['dataset']['kind']}")
def test_the_checks_never_read_the_ignored_fields(raw: dict[str, Any]) -> None:
    """What makes the table exact: the same answer (the fields the checks change, and the cost)
    whatever the ignored fields hold."""
    spec = JobSpec.model_validate(raw)
    other = JobSpec.model_validate({**raw, **OTHER_VALUES})
    assert question(spec) == question(other)
    checked, cost = _answer(spec)
    checked_other, cost_other = _answer(other)
    assert cost == cost_other
    for name in set(JobSpec.model_fields) - IGNORED:
        assert getattr(checked, name) == getattr(checked_other, name), name


def test_a_refusal_does_not_depend_on_the_ignored_fields_either() -> None:
    raw = iris_spec(shards=200)  # more shards than training rows
    errors = []
    for variant in (raw, {**raw, **OTHER_VALUES}):
        with pytest.raises(ValidationError) as refused:
            validate_submission(JobSpec.model_validate(variant))
        errors.append([(e["loc"], e["msg"]) for e in refused.value.errors()])
    assert errors[0] == errors[1]


@pytest.mark.parametrize(
    "change",
    [
        {"params": {"n_estimators": 4, "max_depth": 4}},
        {"params": {"n_estimators": 3, "max_depth": 4.0}},  # a float is not the int
        {"shards": 3},
        {"test_size": 0.3},
        {"random_state": 1},
        {"max_attempts": 4},
        {"baseline": True},
        {"partition": "replicate"},
        {"dataset": {"kind": "builtin", "name": "wine"}},
        {"algorithm": "extra_trees_classifier"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_any_field_the_checks_read_asks_another_question(change: dict[str, Any]) -> None:
    assert question(JobSpec.model_validate(iris_spec())) != question(
        JobSpec.model_validate(iris_spec(**change))
    )


def test_the_table_is_bounded_and_hands_out_copies() -> None:
    table = CheckedSpecs(entries=2)
    keys = [question(JobSpec.model_validate(iris_spec(shards=n))) for n in (1, 2, 3)]
    spec = JobSpec.model_validate(iris_spec())
    checked, cost = _answer(spec)
    changes = {"params": checked.params}
    for key in keys:
        table.put(key, (changes, cost))
    assert len(table) == 2
    assert table.get(keys[0]) is None  # the least recently used went first
    first = table.get(keys[1])
    assert first is not None and first == (changes, cost)
    first[0]["params"]["n_estimators"] = 1_000  # what one job does to its copy ...
    second = table.get(keys[1])
    assert second is not None and second[0]["params"] == checked.params  # ... stays its own
    assert (table.hits, table.misses) == (2, 1)


def test_no_entries_keeps_nothing() -> None:
    table = CheckedSpecs(entries=0)
    key = question(JobSpec.model_validate(iris_spec()))
    table.put(key, ({}, _answer(JobSpec.model_validate(iris_spec()))[1]))
    assert table.get(key) is None
