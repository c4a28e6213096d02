"""Per-class metrics of a version and the recall-drop flag (zootrain.class_quality,
zootrain.ml.scoring.per_class): pure logic, no server."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import precision_score, recall_score

from zootrain.class_quality import (
    RECALL_DROP,
    ClassMetrics,
    best_shard,
    build_report,
    recall_drops,
)
from zootrain.ml.scoring import per_class, predictions


def metrics(
    recalls: dict[object, float], support: int = 50, f1: float | None = None
) -> list[ClassMetrics]:
    return [
        ClassMetrics(
            label=label, precision=r, recall=r, f1=r if f1 is None else f1, support=support
        )
        for label, r in recalls.items()
    ]


def test_per_class_matches_scikit_learn_and_keeps_a_class_never_predicted() -> None:
    y = np.array(["a", "a", "b", "b", "b", "c", "c", "d"])
    pred = np.array(["a", "b", "b", "b", "a", "c", "a", "a"])
    classes = np.array(["a", "b", "c", "d", "e"])  # "e": in the job's data, not held out
    rows = per_class(y, pred, classes)
    assert [r["label"] for r in rows] == ["a", "b", "c", "d", "e"]
    for row in rows:
        label = row["label"]
        expected_recall = recall_score(y, pred, labels=[label], average=None, zero_division=0)[0]
        expected_precision = precision_score(
            y, pred, labels=[label], average=None, zero_division=0
        )[0]
        assert row["recall"] == pytest.approx(expected_recall)
        assert row["precision"] == pytest.approx(expected_precision)
        assert row["support"] == int(np.sum(y == label))
    by_label = {r["label"]: r for r in rows}
    assert by_label["a"]["recall"] == 0.5 and by_label["a"]["precision"] == 0.25
    assert by_label["d"] == {"label": "d", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert by_label["e"]["support"] == 0
    # Plain JSON values, not numpy scalars.
    assert all(type(r["support"]) is int and type(r["recall"]) is float for r in rows)


def test_per_class_of_integer_labels_are_python_ints() -> None:
    rows = per_class(np.array([0, 1, 1]), np.array([0, 1, 0]), np.array([0, 1]))
    assert [type(r["label"]) for r in rows] == [int, int]
    assert rows[1]["recall"] == 0.5


def test_predictions_of_a_forest_are_its_predict() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X[:, 0] > 0).astype(int)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    assert np.array_equal(predictions(forest, X), forest.predict(X))


def test_a_drop_of_more_than_ten_points_against_the_baseline_is_flagged() -> None:
    merged = metrics({"common": 0.95, "rare": 0.0})
    baseline = metrics({"common": 0.96, "rare": 0.60})
    drops = recall_drops(merged, baseline=baseline)
    assert [(d.label, d.against) for d in drops] == [("rare", "baseline")]
    assert drops[0].recall == 0.0 and drops[0].reference_recall == 0.60
    assert drops[0].drop == pytest.approx(0.60)
    assert "rare" in drops[0].sentence() and "baseline" in drops[0].sentence()


def test_a_drop_of_exactly_ten_points_is_not_flagged_but_just_over_is() -> None:
    assert RECALL_DROP == 0.10
    assert recall_drops(metrics({"x": 0.7}), baseline=metrics({"x": 0.8})) == []
    assert len(recall_drops(metrics({"x": 0.69}), baseline=metrics({"x": 0.8}))) == 1


def test_a_gain_or_a_class_absent_from_the_held_out_rows_is_never_flagged() -> None:
    assert recall_drops(metrics({"x": 0.9}), baseline=metrics({"x": 0.1})) == []
    absent = metrics({"x": 0.0}, support=0)
    assert recall_drops(absent, baseline=metrics({"x": 1.0})) == []


def test_labels_are_matched_across_json_types() -> None:
    # Labels come back from JSON: 1 (an int) in one list and 1.0 in another are one class.
    merged = metrics({1: 0.1})
    assert len(recall_drops(merged, baseline=metrics({1.0: 0.9}))) == 1


def test_the_best_shard_is_the_one_with_the_highest_macro_f1() -> None:
    knows_all = metrics({"a": 0.8, "b": 0.5})
    common_only = metrics({"a": 0.95, "b": 0.0})
    assert best_shard([common_only, knows_all, knows_all]) == 1
    assert best_shard([]) is None


def test_the_report_flags_against_the_baseline_and_the_best_shard() -> None:
    merged = metrics({"a": 0.97, "b": 0.05})
    shards = [metrics({"a": 0.9, "b": 0.0}), metrics({"a": 0.85, "b": 0.4})]
    report = build_report(merged, baseline=metrics({"a": 0.97, "b": 0.5}), shards=shards)
    assert report.best_shard == 1
    assert {(d.label, d.against, d.shard) for d in report.recall_drops} == {
        ("b", "baseline", None),
        ("b", "best_shard", 1),
    }
    quiet = build_report(merged, baseline=None, shards=[metrics({"a": 0.9, "b": 0.1})])
    assert quiet.recall_drops == [] and quiet.best_shard == 0 and quiet.baseline is None
