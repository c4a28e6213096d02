"""A merged forest scored from its shards' predictions of the held-out rows
(zootrain.ml.heldout): the same scores as the merged model's own predict_proba / predict, to
1e-12, through the library and through the training child's shard and merge tasks."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import pytest

from workers import train_child
from zootrain.artifacts import ArtifactStore
from zootrain.ml import heldout, modelfile
from zootrain.ml.algorithms import ALGORITHMS
from zootrain.ml.datasets import BuiltinDataset, Split, load_dataset, split_dataset
from zootrain.ml.merge import merge_models
from zootrain.ml.partition import Strategy
from zootrain.ml.scoring import evaluate, evaluate_outputs, labels_of, predictions
from zootrain.ml.training import fit_shards
from zootrain.ml.validation import validate_submission
from zootrain.spec import JobSpec

FORESTS = [name for name, a in ALGORITHMS.items() if a.merge == "forest_union"]


def _split(name: str) -> Split:
    X, y = load_dataset(BuiltinDataset(kind="builtin", name=name))
    task = "regression" if name == "diabetes" else "classification"
    return split_dataset(X, y, task=task, test_size=0.25, seed=3)


def _close(found: dict[str, float], expected: dict[str, float]) -> None:
    assert found.keys() == expected.keys()
    for name, value in expected.items():
        assert abs(found[name] - value) <= 1e-12, (name, found[name], value)


@pytest.mark.parametrize("algorithm", FORESTS)
@pytest.mark.parametrize("partition", ["replicate", "random"])
def test_pooled_scores_equal_the_merged_forests_own(algorithm: str, partition: Strategy) -> None:
    task = ALGORITHMS[algorithm].task
    for name in ["diabetes"] if task == "regression" else ["iris", "wine", "breast_cancer"]:
        split = _split(name)
        for shards, trees in [(2, 2), (3, 5), (4, 1)]:
            params: dict[str, Any] = {"n_estimators": trees, "max_depth": 6}
            models, rows = fit_shards(algorithm, params, split, shards, partition, job_seed=7)
            for model in models:
                outputs = heldout.forest_outputs(model, split.X_test, task)
                assert outputs is not None
                heldout.keep(model, "rows", outputs)
            merged = merge_models(algorithm, models, rows)
            assert not hasattr(merged, heldout.ATTRIBUTE)  # never served with the merged file
            pooled = heldout.pooled(models, "rows")
            assert pooled is not None
            own = evaluate(merged, split.X_test, split.y_test, task=task, classes=split.classes)
            found = evaluate_outputs(
                pooled,
                split.y_test,
                task=task,
                model_classes=getattr(merged, "classes_", None),
                classes=split.classes,
            )
            _close(found, own)
            if task == "classification":
                assert np.abs(pooled - merged.predict_proba(split.X_test)).max() <= 1e-12
                assert np.array_equal(
                    labels_of(pooled, merged.classes_), predictions(merged, split.X_test)
                )
            else:
                assert np.abs(pooled - merged.predict(split.X_test)).max() <= 1e-9


def test_outputs_of_other_rows_or_missing_ones_are_not_pooled() -> None:
    split = _split("iris")
    models, _ = fit_shards(
        "random_forest_classifier", {"n_estimators": 2}, split, 2, "replicate", job_seed=1
    )
    assert heldout.pooled(models, "rows") is None  # nothing kept
    outputs = [heldout.forest_outputs(m, split.X_test, "classification") for m in models]
    assert outputs[0] is not None and outputs[1] is not None
    heldout.keep(models[0], "rows", outputs[0])
    assert heldout.pooled(models, "rows") is None  # one shard kept nothing
    heldout.keep(models[1], "other rows", outputs[1])
    assert heldout.pooled(models, "rows") is None  # one shard predicted other rows
    heldout.keep(models[1], "rows", outputs[1][:5])
    assert heldout.pooled(models, "rows") is None  # not the same rows after all
    heldout.keep(models[1], "rows", outputs[1])
    assert heldout.pooled(models, "rows") is not None


def test_the_kept_outputs_travel_in_the_shards_file() -> None:
    split = _split("wine")
    (model,), _ = fit_shards(
        "extra_trees_classifier", {"n_estimators": 3}, split, 1, "replicate", job_seed=2
    )
    outputs = heldout.forest_outputs(model, split.X_test, "classification")
    assert outputs is not None
    heldout.keep(model, heldout.rows_key(np.arange(len(split.X_test))), outputs)
    loaded = modelfile.loads(modelfile.dumps(model))  # skops trusts what was added
    kept = heldout.kept(loaded, heldout.rows_key(np.arange(len(split.X_test))))
    assert kept is not None and np.array_equal(kept, outputs)
    assert heldout.kept(loaded, heldout.rows_key(np.arange(3))) is None


def test_only_forests_have_outputs_to_pool() -> None:
    split = _split("iris")
    (model,), _ = fit_shards("logistic_regression", {}, split, 1, "random", job_seed=0)
    assert heldout.forest_outputs(model, split.X_test, "classification") is None


def _run_job(
    spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch, pooled: bool
) -> tuple[dict[str, Any], list[dict[str, Any]], str]:
    """Every task of a job, then its merge, through the training child's functions; the merge
    predicts with the merged model only when the shards' predictions cannot be pooled."""
    store = tempfile.mkdtemp(prefix="zootrain-heldout-")
    checked = validate_submission(JobSpec.model_validate(spec))
    payload = {"spec": checked.model_dump(mode="json"), "artifacts": store, "dataset_source": None}
    shards = [
        {"role": checked.role(i), **train_child.train_shard({**payload, "index": i})}
        for i in range(checked.tasks)
    ]
    predicted: list[int] = []
    own = heldout.forest_outputs

    def counted(model: Any, X: np.ndarray, task: str) -> np.ndarray | None:
        predicted.append(len(X))
        return own(model, X, task)

    with monkeypatch.context() as patch:
        patch.setattr(heldout, "forest_outputs", counted)
        merged = train_child.merge_job({**payload, "holder": None, "shards": shards})
    assert predicted == ([] if pooled else [merged["test_rows"]])  # once, when not pooled
    return merged, shards, store


@pytest.mark.parametrize(
    ("algorithm", "dataset", "partition", "shards", "pooled"),
    [
        ("random_forest_classifier", "iris", "random", 2, True),  # held-out set < a slice
        ("extra_trees_classifier", "digits", "replicate", 3, True),
        ("random_forest_regressor", "diabetes", "replicate", 2, True),
        ("random_forest_classifier", "digits", "stratified", 3, True),
        # 2,400 held-out rows: each of two data shards scores a slice of 2,000 of them.
        ("random_forest_classifier", "synthetic", "random", 2, False),
        ("random_forest_classifier", "synthetic", "replicate", 2, True),
    ],
)
def test_a_merge_scores_the_merged_forest_as_its_own_predictions_do(
    algorithm: str,
    dataset: str,
    partition: str,
    shards: int,
    pooled: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data: dict[str, Any] = {"kind": "builtin", "name": dataset}
    if dataset == "synthetic":
        data = {"kind": "synthetic", "task": "classification", "n_samples": 12_000}
        data |= {"n_features": 8, "n_classes": 3, "n_informative": 5, "random_state": 1}
    spec = {
        "model_name": "heldout",
        "algorithm": algorithm,
        "params": {"n_estimators": 3, "max_depth": 5},
        "dataset": data,
        "shards": shards,
        "partition": partition,
        "random_state": 4,
    }
    merged, tasks, store = _run_job(spec, monkeypatch, pooled)
    split = train_child.held_out({"spec": spec, "artifacts": store, "dataset_source": None})
    files = ArtifactStore(store)
    model = modelfile.loads(files.get(merged["artifact"], merged["sha256"]))
    assert not hasattr(model, heldout.ATTRIBUTE)  # served without the shards' predictions
    task = merged["task"]
    own = evaluate(model, split.X_test, split.y_test, task=task, classes=split.classes)
    _close(merged["metrics"], own)
    shard_models = [modelfile.loads(files.get(t["artifact"], t["sha256"])) for t in tasks]
    assert all(hasattr(m, heldout.ATTRIBUTE) for m in shard_models) == pooled
    if task == "classification":
        report = merged["class_report"]
        assert report["merged"] == train_child.per_class(
            split.y_test, predictions(model, split.X_test), split.classes
        )
        assert report["shards"] == [
            train_child.per_class(split.y_test, predictions(m, split.X_test), split.classes)
            for m in shard_models
        ]
