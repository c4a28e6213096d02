"""validate_submission: the checks of a job spec that need scikit-learn, in one explicit call.

zootrain.spec parses a spec field by field, without scikit-learn. What a submit checks beyond
that is here: the parameters against the estimator's own constraints (cleaned to plain JSON), a
search's scorer and every candidate, the algorithm against the dataset's task and features, the
partition, and the shards against the dataset's rows. The submit route calls it (in a child
process of the job service, which never imports scikit-learn: app.pool) and so does the
training child before it trains; reading a record back never does.

The errors are pydantic's, located as the same checks made inside the model would locate them
(``params``, ``search.scoring``, or the spec itself), so a refused submit reads the same.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from zootrain.ml.algorithms import validate_params
from zootrain.ml.search import check_candidates
from zootrain.shape_bounds import check_shape, fit_rows
from zootrain.spec import (
    JobSpec,
    ParamError,
    UploadedDataset,
    check_features,
    check_partition,
    check_task,
    dataset_classes,
    dataset_shape,
    dataset_task,
    oversized_search,
)


def validate_submission(spec: JobSpec) -> JobSpec:
    """The spec as a submit accepts it (parameters cleaned; a search's shards are its
    candidates), or pydantic's ValidationError naming what is wrong."""
    errors: list[InitErrorDetails] = []
    params = spec.params
    try:
        params = validate_params(spec.algorithm, spec.params)
    except ParamError as exc:
        errors.append(_error(("params",), f"{exc.param}: {exc}", spec.params))
    scoring = spec.search.scoring if spec.search is not None else None
    if scoring is not None:
        from sklearn.metrics import get_scorer_names

        if scoring not in get_scorer_names():
            errors.append(_error(("search", "scoring"), f"unknown scorer {scoring!r}", scoring))
    if errors:
        # Like pydantic, a spec whose fields are wrong is not checked as a whole.
        raise ValidationError.from_exception_data(type(spec).__name__, errors)
    try:
        return _consistent(spec.model_copy(update={"params": params}))
    except ValueError as exc:
        raise ValidationError.from_exception_data(
            type(spec).__name__, [_error((), str(exc), spec.model_dump(mode="json"))]
        ) from None


def _error(loc: tuple[str, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": message})


def _consistent(spec: JobSpec) -> JobSpec:
    if spec.kind == "search" and isinstance(spec.dataset, UploadedDataset):
        return _with_candidates(spec)
    if isinstance(spec.dataset, UploadedDataset):
        # Task, columns and rows are in the dataset's record: checked against it at submit
        # (zootrain.uploads), before anything is written.
        return spec
    check_task(spec.algorithm, dataset_task(spec.dataset))
    check_features(spec.algorithm, spec.dataset)
    check_partition(spec.algorithm, spec.partition, dataset_task(spec.dataset))
    rows, features = dataset_shape(spec.dataset)
    # The same rounding as split_dataset (train_test_split): the test set is ceil'd.
    train_rows = rows - math.ceil(rows * spec.test_size)
    _check_shape_of(spec, features, train_rows, dataset_classes(spec.dataset))
    if spec.kind == "search":
        return _with_candidates(spec)
    if spec.search is not None:
        raise ValueError("search: only a job of kind 'search' takes a search")
    if spec.shards > train_rows:
        raise ValueError(
            f"shards ({spec.shards}) exceeds the {train_rows} training rows of the dataset"
        )
    if rows - train_rows < 2:
        raise ValueError("test_size leaves fewer than 2 held-out rows")
    return spec


def _check_shape_of(spec: JobSpec, features: int, train_rows: int, classes: int | None) -> None:
    """The job's parameters (or a search's candidates) against the dataset's feature count and
    the rows one fit sees (zootrain.shape_bounds). An uploaded dataset's shape is in its
    record, read by the submit route (zootrain.uploads): not here."""
    try:
        if spec.kind == "search" and spec.search is not None:
            if oversized_search(spec) is None:
                rows = fit_rows(train_rows, 1, whole=True, folds=spec.search.cv)
                for candidate in spec.candidate_params():
                    check_shape(
                        spec.algorithm, candidate, features=features, rows=rows, classes=classes
                    )
        elif spec.shards <= train_rows:  # more shards than rows is refused below, by name
            whole = spec.partition == "replicate"
            rows = fit_rows(train_rows, spec.shards, whole=whole)
            check_shape(spec.algorithm, spec.params, features=features, rows=rows, classes=classes)
    except ParamError as exc:
        where = "search: candidate parameter" if spec.kind == "search" else "params:"
        raise ValueError(f"{where} {exc.param}: {exc}") from None


def _with_candidates(spec: JobSpec) -> JobSpec:
    if spec.search is None:
        raise ValueError("search: a job of kind 'search' needs a search")
    if spec.baseline:
        raise ValueError("baseline: a search job refits its best candidate on all rows")
    # Counted from the lists' lengths first: nothing is expanded past the cap.
    oversized = oversized_search(spec)
    if oversized is not None:
        raise ValueError(oversized)
    params = spec.candidate_params()
    try:
        check_candidates(spec.algorithm, params)
    except ParamError as exc:
        raise ValueError(f"search: candidate parameter {exc.param}: {exc}") from None
    # Each candidate is one task: the job's "shards" are its candidates.
    return spec.model_copy(update={"shards": len(params)})
