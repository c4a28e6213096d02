"""What runs inside a training child process: one shard's fit, or the merge of a job's shards.

Payloads and results are plain dicts (they cross a pipe). Everything a retried shard needs is in
the payload, and the rows it trains on follow from the job's seed, so a retry trains the same rows.
A shard reads (or generates) only its own training rows and its slice of the held-out rows
(zootrain.ml.selection); the merge reads the held-out rows only.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from traceback import format_exc
from typing import Any

import numpy as np

from zootrain.artifacts import ArtifactStore
from zootrain.class_quality import NO_PER_CLASS, ClassMetrics, ClassReport, build_report
from zootrain.ml import heldout, modelfile
from zootrain.ml.algorithms import ALGORITHMS, build_estimator
from zootrain.ml.columnar import Manifest
from zootrain.ml.datasets import (
    BuiltinDataset,
    Split,
    SyntheticDataset,
    Task,
    UploadedDataset,
    dataset_task,
    load_dataset,
)
from zootrain.ml.merge import merge_models
from zootrain.ml.rows import ArraySource, ColumnarSource, RowSource, SyntheticSource
from zootrain.ml.scoring import evaluate, evaluate_outputs, labels_of, per_class, predictions
from zootrain.ml.search import baseline_params, best_candidate, cross_validate
from zootrain.ml.selection import (
    RowPlan,
    eval_positions,
    plan_rows,
    range_rows,
    shard_positions,
)
from zootrain.ml.synthetic import Generator
from zootrain.ml.tabular import DatasetSource, load_uploaded
from zootrain.ml.training import fit_job_shard
from zootrain.ml.validation import validate_submission
from zootrain.spec import JobSpec


def _spec(payload: dict[str, Any]) -> JobSpec:
    """The job's spec, validated again as its submit validated it: what this child trains must
    pass the same checks, whatever wrote the record."""
    return validate_submission(JobSpec.model_validate(payload["spec"]))


def _source(spec: JobSpec, payload: dict[str, Any], store: ArtifactStore) -> tuple[RowSource, Task]:
    """The job's dataset as rows to read by position, and its task.

    An uploaded dataset comes from the source resolved at submit (in the job record): its
    manifest is read only once its bytes match the recorded sha256, then only the row groups
    and planned columns a task needs, each chunk checked against the manifest.
    """
    dataset = spec.dataset
    if isinstance(dataset, UploadedDataset):
        if payload.get("dataset_source") is None:
            raise ValueError(f"job on uploaded dataset {dataset.id} has no resolved source")
        source = DatasetSource.model_validate(payload["dataset_source"])
        if source.artifact_sha256 is not None:
            manifest = Manifest.model_validate_json(
                store.get(source.artifact, source.artifact_sha256)
            )
            return ColumnarSource(store, manifest, source.plan), source.task
        # Stored before the columnar form: one CSV or Parquet file, read whole.
        X, y = load_uploaded(source, store.get(source.artifact, source.sha256))
        return ArraySource(X, y), source.task
    if isinstance(dataset, SyntheticDataset):
        return SyntheticSource(Generator(dataset)), dataset_task(dataset)
    assert isinstance(dataset, BuiltinDataset)
    X, y = load_dataset(dataset)
    return ArraySource(X, y), dataset_task(dataset)


def _plan(spec: JobSpec, rows: RowSource, task: Task) -> RowPlan:
    """The job's held-out split; classification reads every row's label (one column)."""
    classes = codes = None
    if task == "classification":
        classes, codes = rows.labels()
    return plan_rows(
        rows.n_rows, test_size=spec.test_size, seed=spec.random_state, classes=classes, codes=codes
    )


class _Warm:
    """What a warm child (workers/processes.py) keeps from one job's task for the job's next
    task: the dataset's rows and held-out plan (a built-in or synthetic dataset: an uploaded one
    is read again, so that each task's ``bytes_read`` is its own), and the shard models it
    trained, by the sha256 of their files, so that a merge in this child need not read and
    load them again. A task of another job drops it all first."""

    def __init__(self, key: str = "") -> None:
        self.key = key
        self.spec: JobSpec | None = None
        self.rows: tuple[RowSource, Task, RowPlan] | None = None
        self.models: dict[str, Any] = {}


_WARM = _Warm()


def _warm(payload: dict[str, Any]) -> _Warm:
    """What this child keeps of the payload's job, emptied first if it was another job's."""
    global _WARM
    key = json.dumps([payload["spec"], payload.get("dataset_source")], sort_keys=True)
    if _WARM.key != key:
        _WARM = _Warm(key)
    return _WARM


def _job_spec(payload: dict[str, Any]) -> JobSpec:
    """The job's spec, validated (``_spec``) once for all the job's tasks in this child: the
    same JSON gives the same answer."""
    warm = _warm(payload)
    if warm.spec is None:
        warm.spec = _spec(payload)
    return warm.spec


def _job_rows(
    spec: JobSpec, payload: dict[str, Any], store: ArtifactStore
) -> tuple[RowSource, Task, RowPlan]:
    """The job's rows, task and plan: from this child's previous task of the job if it had
    them."""
    warm = _warm(payload)
    if warm.rows is not None:
        return warm.rows
    rows, task = _source(spec, payload, store)
    found = (rows, task, _plan(spec, rows, task))
    if not isinstance(spec.dataset, UploadedDataset):
        warm.rows = found
    return found


def _all_rows(rows: RowSource, plan: RowPlan) -> Split:
    (X_train, y_train), (X_test, y_test) = rows.shuffled_many(
        [plan.to_shuffled(plan.train()), plan.to_shuffled(plan.test)]
    )
    return Split(X_train, y_train, X_test, y_test, plan.classes)


def _held(spec: JobSpec, index: int, plan: RowPlan) -> np.ndarray:
    """The held-out rows shard ``index`` scores itself on, as positions a reader takes."""
    return plan.to_shuffled(eval_positions(plan, spec.shards, index, spec.strategy))


def _whole_held_out(spec: JobSpec, index: int, plan: RowPlan) -> str | None:
    """The key (zootrain.ml.heldout) of the held-out rows shard ``index`` scores itself on if
    they are the job's whole held-out set, the rows the merge scores the merged model on."""
    held = _held(spec, index, plan)
    return heldout.rows_key(held) if len(held) == plan.n_test else None


def _shard_rows(spec: JobSpec, index: int, rows: RowSource, plan: RowPlan) -> Split:
    """One shard's training rows and the held-out rows it scores itself on: nothing else."""
    held = _held(spec, index, plan)
    if spec.partition == "range":
        test_original = rows.original_index(plan.to_shuffled(plan.test))
        X_train, y_train = rows.original(range_rows(plan, test_original, spec.shards, index))
        X_test, y_test = rows.shuffled(held)
    else:
        positions = plan.to_shuffled(shard_positions(plan, spec.shards, index, spec.strategy))
        # One pass: the row groups at the edge of both are read once.
        (X_train, y_train), (X_test, y_test) = rows.shuffled_many([positions, held])
    return Split(X_train, y_train, X_test, y_test, plan.classes)


def held_out(payload: dict[str, Any]) -> Split:
    """The held-out rows of a job (``spec``, ``artifacts``, ``dataset_source``), as the merge
    scores the merged model on them; the training rows are left empty."""
    spec = _spec(payload)
    rows, task = _source(spec, payload, ArtifactStore(payload["artifacts"]))
    plan = _plan(spec, rows, task)
    X_test, y_test = rows.shuffled(plan.to_shuffled(plan.test))
    return Split(np.empty((0, X_test.shape[1])), y_test[:0], X_test, y_test, plan.classes)


def train_shard(payload: dict[str, Any]) -> dict[str, Any]:
    """One task of a job: a data shard's model, the all-rows baseline, or a search candidate."""
    spec = _job_spec(payload)
    index: int = payload["index"]
    store = ArtifactStore(payload["artifacts"])
    rows, task, plan = _job_rows(spec, payload, store)
    role = spec.role(index)
    if role == "candidate":
        return _cross_validate(spec, index, _all_rows(rows, plan))
    if role == "baseline":
        return _baseline(spec, _all_rows(rows, plan), task)
    split = _shard_rows(spec, index, rows, plan)
    key = _whole_held_out(spec, index, plan)
    del rows, plan
    started = time.perf_counter()
    model = fit_job_shard(
        spec.algorithm,
        spec.params,
        index,
        X=split.X_train,
        y=split.y_train,
        classes=split.classes,
        job_seed=spec.random_state,
    )
    seconds = time.perf_counter() - started
    # A forest's predictions of the held-out rows, once: its scores come from them, and if they
    # are of the job's whole held-out set they go into its file for the merge to pool.
    outputs = heldout.forest_outputs(model, split.X_test, task)
    if outputs is not None and key is not None:
        heldout.keep(model, key, outputs)
    metrics, _, (uri, digest) = _score_and_write(store, model, split, task, outputs)
    _WARM.models[digest] = model
    return {
        "artifact": uri,
        "sha256": digest,
        "rows": len(split.X_train),
        "metrics": metrics,
        "train_seconds": seconds,
        "bytes_read": store.bytes_read,
    }


def train_shards(payload: dict[str, Any]) -> dict[str, Any]:
    """Several shards of one small job, one after another (workers/shard_groups.py): each
    one's result as train_shard gives it, or its failure alone. Every model stays in this
    child's memory (_WARM.models), so the job's merge, run here next, reads none of them back."""
    results: dict[int, dict[str, Any]] = {}
    for index in payload["indices"]:
        try:
            results[index] = train_shard({**payload, "index": index})
        except Exception as exc:
            results[index] = {"failed": f"{type(exc).__name__}: {exc}", "trace": format_exc()}
    return {"results": results}


def _cross_validate(spec: JobSpec, index: int, split: Split) -> dict[str, Any]:
    assert spec.search is not None
    started = time.perf_counter()
    scores = cross_validate(
        spec.algorithm,
        spec.candidate_params()[index],
        split.X_train,
        split.y_train,
        folds=spec.search.cv,
        scoring=spec.search.scoring,
        seed=spec.random_state,
    )
    seconds = time.perf_counter() - started
    rows = len(split.X_train)
    return {
        "artifact": None,
        "sha256": None,
        "rows": rows,
        "metrics": scores,
        "train_seconds": seconds,
    }


def _fit_all_rows(spec: JobSpec, params: dict[str, Any], split: Split) -> Any:
    model = build_estimator(spec.algorithm, params, random_state=spec.random_state)
    if ALGORITHMS[spec.algorithm].task == "clustering":
        return model.fit(split.X_train)
    return model.fit(split.X_train, split.y_train)


def _baseline(spec: JobSpec, split: Split, task: Task) -> dict[str, Any]:
    """A single model on all training rows, as large as the merged one, for comparison."""
    started = time.perf_counter()
    params = baseline_params(spec.algorithm, spec.params, spec.shards)
    model = _fit_all_rows(spec, params, split)
    seconds = time.perf_counter() - started
    metrics = evaluate(model, split.X_test, split.y_test, task=task, classes=split.classes)
    rows = len(split.X_train)
    return {
        "artifact": None,
        "sha256": None,
        "rows": rows,
        "metrics": metrics,
        "train_seconds": seconds,
        # The baseline's model is not kept: its per-class metrics are taken here, on the
        # job's whole held-out split, the rows the merge scores the merged model on.
        "class_metrics": _per_class(spec, model, split, task),
    }


def merge_job(payload: dict[str, Any]) -> dict[str, Any]:
    """Merge a job's shard models (or pick and refit its best candidate) and score the result."""
    spec = _job_spec(payload)
    store = ArtifactStore(payload["artifacts"])
    tasks: list[dict[str, Any]] = payload["shards"]
    rows, task, plan = _job_rows(spec, payload, store)
    extra: dict[str, Any] = {}
    models: list[Any] = []  # the shard models, for a train job
    outputs = None  # the merged forest's predictions of the held-out rows, pooled
    key = ""  # names the held-out rows the shards' kept predictions must be of
    if spec.kind == "search":
        split = _all_rows(rows, plan)  # the best candidate is refitted on every training row
        model, extra["search"] = _best_candidate(spec, tasks, split)
    else:
        # Only the held-out rows: the merged model is scored on them.
        test = plan.to_shuffled(plan.test)
        key = heldout.rows_key(test)
        X_test, y_test = rows.shuffled(test)
        split = Split(np.empty((0, X_test.shape[1])), y_test[:0], X_test, y_test, plan.classes)
        shards = [t for t in tasks if t["role"] == "shard"]
        if spec.rounds:
            # Trained in rounds: every shard names the one model the last round made.
            model = modelfile.loads(store.get(shards[0]["artifact"], shards[0]["sha256"]))
        else:
            # A shard this child trained is in memory already: the same model its file holds.
            models = [
                _WARM.models.get(s["sha256"])
                or modelfile.loads(store.get(s["artifact"], s["sha256"]))
                for s in shards
            ]
            model = merge_models(spec.algorithm, models, [s["rows"] for s in shards])
            # Forest shards that scored themselves on these very rows predicted them for the
            # merged forest already (zootrain.ml.heldout).
            outputs = heldout.pooled(models, key)
    if outputs is None:
        # Predicted by the merged model itself, once, for both its scores and its report.
        outputs = heldout.forest_outputs(model, split.X_test, task)
    metrics, data_size, (uri, digest) = _score_and_write(store, model, split, task, outputs)
    extra["class_report"] = _class_report(spec, model, outputs, models, key, tasks, split, task)
    baseline = next((t for t in tasks if t["role"] == "baseline"), None)
    if baseline is not None:
        extra["baseline_metrics"] = baseline["metrics"]
        extra["baseline_gap"] = {
            name: metrics[name] - value
            for name, value in baseline["metrics"].items()
            if name in metrics
        }
    if payload.get("holder") is not None:
        extra["gate"] = _gate(store, payload["holder"], metrics, split, task)
    clusters = ALGORITHMS[spec.algorithm].task == "clustering"
    # A clusterer predicts cluster ids, not the dataset's labels.
    classes = None if split.classes is None or clusters else split.classes.tolist()
    return {
        "artifact": uri,
        "sha256": digest,
        "size": data_size,
        "metrics": metrics,
        "n_features": int(split.X_test.shape[1]),
        "classes": classes,
        "train_rows": plan.n_train,
        "test_rows": plan.n_test,
        "task": task,
        **extra,
    }


def _per_class(spec: JobSpec, model: Any, split: Split, task: Task) -> list[dict[str, Any]] | None:
    """Per-class metrics of a classifier on the split's held-out rows (None for the others)."""
    if task != "classification" or ALGORITHMS[spec.algorithm].task == "clustering":
        return None
    return per_class(split.y_test, predictions(model, split.X_test), split.classes)


def _class_report(
    spec: JobSpec,
    model: Any,
    outputs: np.ndarray | None,
    models: list[Any],
    key: str,
    tasks: list[dict[str, Any]],
    split: Split,
    task: Task,
) -> dict[str, Any]:
    """The version's per-class report: the merged model's, the baseline's (from its task) and
    every shard model's metrics on the job's held-out split, and the classes whose recall the
    merge lost (zootrain.class_quality). ``outputs``: the merged forest's probabilities of the
    held-out rows, if known (a forest's labels are their argmax); a shard's come from the
    probabilities it kept in its file for the same rows (named by ``key``), if it did."""
    if task != "classification":
        return ClassReport(note=NO_PER_CLASS["regression"]).model_dump(mode="json")
    if ALGORITHMS[spec.algorithm].task == "clustering":
        return ClassReport(note=NO_PER_CLASS["clustering"]).model_dump(mode="json")
    merged = per_class(split.y_test, _labels(model, outputs, split), split.classes)
    baseline = next((t for t in tasks if t["role"] == "baseline"), None)
    baseline_metrics = None if baseline is None else baseline.get("class_metrics")
    # Each shard model on the whole held-out split (a shard scored itself on a slice only):
    # the same rows as the merged model, so the best shard is a fair reference.
    shard_metrics = [
        per_class(split.y_test, _labels(m, heldout.kept(m, key), split), split.classes)
        for m in models
    ] or None
    report = build_report(
        [ClassMetrics.model_validate(m) for m in merged],
        baseline=None
        if baseline_metrics is None
        else [ClassMetrics.model_validate(m) for m in baseline_metrics],
        shards=None
        if shard_metrics is None
        else [[ClassMetrics.model_validate(m) for m in s] for s in shard_metrics],
    )
    return report.model_dump(mode="json")


def _labels(model: Any, outputs: np.ndarray | None, split: Split) -> np.ndarray:
    """A classifier's labels for the held-out rows: the argmax of its forest probabilities if
    they are known, else its own prediction."""
    if outputs is not None:
        return labels_of(outputs, model.classes_)
    return predictions(model, split.X_test)


def _gate(
    store: ArtifactStore,
    holder: dict[str, Any],
    metrics: dict[str, float],
    split: Split,
    task: Task,
) -> dict[str, Any]:
    """Gated promotion (spec.publish.if_better): the alias holder scored on this job's own
    held-out rows, beside the new model's score on the same rows. A holder that cannot be
    scored on them (other features, other labels) is reported, never raised: the publish
    still happens, without the alias."""
    gate: dict[str, Any] = {"holder_version": holder["version"]}
    metric, score = gate_score(metrics, task)
    gate.update(metric=metric, score=score)
    try:
        model = modelfile.loads(store.get(holder["artifact"], holder["sha256"]))
        held = evaluate(model, split.X_test, split.y_test, task=task, classes=split.classes)
    except Exception as exc:  # any refusal of the rows by the holder's estimator
        gate["holder_error"] = f"{type(exc).__name__}: {exc}"[:300]
        return gate
    gate["holder_score"] = gate_score(held, task)[1]
    return gate


def gate_score(metrics: dict[str, float], task: Task) -> tuple[str, float | None]:
    """The one held-out score a gated promotion compares, higher better: accuracy, r2, or for a
    clusterer adjusted_rand (if the dataset has labels) or else the negated inertia."""
    if "adjusted_rand" in metrics or "inertia" in metrics:
        if "adjusted_rand" in metrics:
            return "adjusted_rand", metrics["adjusted_rand"]
        return "-inertia", -metrics["inertia"]
    name = "accuracy" if task == "classification" else "r2"
    return name, metrics.get(name)


def _score_and_write(
    store: ArtifactStore,
    model: Any,
    split: Split,
    task: Task,
    outputs: np.ndarray | None = None,
) -> tuple[dict[str, float], int, tuple[str, str]]:
    """Held-out metrics, and the model file written: (metrics, size, (uri, sha256)).
    ``outputs``: the forest's predictions of the held-out rows, if known (zootrain.ml.heldout):
    the scores are taken from them rather than by predicting again.

    A model that has to predict does so while its file is written: both spend their time in C
    code that releases the GIL (the trees' predictions; zip and sha256), and for a big forest
    each takes a few hundred milliseconds on the path from the last shard to the publish.
    Scores from known outputs are a little NumPy: a thread would only contend with the
    writer's Python (skops) for the GIL, and its start alone cost a tiny task milliseconds.
    Neither changes the model.
    """

    def write() -> tuple[int, tuple[str, str]]:
        data = modelfile.dumps(model)
        return len(data), store.put(data)

    if outputs is not None:
        metrics = evaluate_outputs(
            outputs,
            split.y_test,
            task=task,
            model_classes=getattr(model, "classes_", None),
            classes=split.classes,
        )
        size, stored = write()
        return metrics, size, stored
    with ThreadPoolExecutor(max_workers=1) as pool:
        written = pool.submit(write)
        metrics = evaluate(model, split.X_test, split.y_test, task=task, classes=split.classes)
        size, stored = written.result()
    return metrics, size, stored


def _best_candidate(
    spec: JobSpec, tasks: list[dict[str, Any]], split: Split
) -> tuple[Any, dict[str, Any]]:
    assert spec.search is not None
    candidates = spec.candidate_params()
    scores = [t["metrics"]["cv_mean"] for t in tasks]
    best = best_candidate(scores)
    model = _fit_all_rows(spec, candidates[best], split)
    summary = {
        "best_index": best,
        "best_params": candidates[best],
        "cv": spec.search.cv,
        "scoring": spec.search.scoring,
        "candidates": [
            {"index": i, "params": candidates[i], **tasks[i]["metrics"]} for i in range(len(tasks))
        ],
    }
    return model, summary
