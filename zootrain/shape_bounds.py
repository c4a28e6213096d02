"""Parameters bounded by the data a fit sees: checked at submit against the dataset's shape.

scikit-learn checks these inside fit(), so a job that breaks one was accepted and then failed
on every shard and every retry: a forest's ``max_features`` above the dataset's features, its
``monotonic_cst`` of the wrong length or on a target of more than two classes (scikit-learn
supports monotonic constraints for regression and binary classification only), k-means asked
for more clusters than a shard (or a search's cross-validation fold) has rows, naive Bayes
given priors that are not one per class (or smoothing values not one per feature), SGD's
early-stopping split leaving a side without a row (or a class), liblinear on more than two
classes. The job service checks them before anything is written: for a built-in dataset from
its known shape (zootrain.ml.validation, in the child that validates specs), for an uploaded
one from its record (zootrain.uploads).

Pure: no scikit-learn (the job service imports it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from zootrain.spec import ParamError, algorithm_info

DEFAULT_N_CLUSTERS = 8
"""KMeans' own default, for a spec that leaves n_clusters out (zootrain.ml.algorithms checks at
import that scikit-learn agrees)."""


def fit_rows(train_rows: int, shards: int, *, whole: bool, folds: int | None = None) -> int:
    """The fewest rows one fit sees: a shard's share of the training rows (the smaller one when
    they do not divide evenly), all of them when every shard has them all (``whole``: partition
    replicate, a baseline), or a search's smallest cross-validation training fold (a candidate
    is fitted on all training rows but one fold, the folds rounded up as KFold rounds them)."""
    if folds is not None:
        return train_rows - math.ceil(train_rows / folds)
    return train_rows if whole else train_rows // max(1, shards)


def check_shape(
    algorithm: str,
    params: Mapping[str, Any],
    *,
    features: int,
    rows: int,
    classes: int | None = None,
) -> None:
    """ParamError naming the first parameter that the data's shape makes unfittable.

    ``features``: the columns the estimator is fitted on; ``rows``: the fewest rows one fit
    sees (``fit_rows``); ``classes``: the target's distinct labels when a classifier is fitted
    (None otherwise). ``params`` as the spec gives them: a missing one has its default.
    """
    alg = algorithm_info(algorithm)
    if alg.merge == "forest_union":
        # A regressor fitted on a classification dataset's labels fits numbers: no classes.
        _check_forest(params, features, classes if alg.task == "classification" else None)
    elif alg.merge in _PRIOR_PARAM:
        if classes is not None:
            _check_priors(_PRIOR_PARAM[alg.merge], params, classes)
        alpha = params.get("alpha")
        # MultinomialNB's alpha as a list smooths each feature by its own value.
        if alg.merge == "multinomial_nb" and isinstance(alpha, list) and len(alpha) != features:
            raise ParamError(
                "alpha",
                f"alpha has {len(alpha)} values; the dataset has {features} features (a list "
                "gives one smoothing value per feature; a number smooths them all alike)",
            )
    elif algorithm == "logistic_regression":
        # scikit-learn >= 1.8 fits liblinear's binary problems only (one-vs-rest was removed).
        if params.get("solver") == "liblinear" and classes is not None and classes > 2:
            raise ParamError(
                "solver",
                f"solver 'liblinear' fits binary targets only, and the dataset's target has "
                f"{classes} classes; choose another solver (lbfgs, the default, newton-cg, "
                "newton-cholesky, sag or saga)",
            )
    elif algorithm in ("sgd_classifier", "sgd_regressor"):
        _check_validation_split(params, rows, classes if alg.task == "classification" else None)
    elif alg.merge == "kmeans_centroids":
        n_clusters = params.get("n_clusters", DEFAULT_N_CLUSTERS)
        # bool is an int to Python, and never a valid n_clusters (the params check says so).
        if type(n_clusters) is int and n_clusters > rows:
            raise ParamError(
                "n_clusters",
                f"n_clusters={n_clusters} exceeds the {rows} rows one fit of this job sees "
                "(k-means needs a row per cluster); ask for fewer clusters or fewer shards",
            )


DEFAULT_VALIDATION_FRACTION = 0.1
"""SGD's own default (zootrain.ml.algorithms checks at import that scikit-learn agrees)."""


def _check_validation_split(params: Mapping[str, Any], rows: int, classes: int | None) -> None:
    """SGD's ``early_stopping`` holds out ``validation_fraction`` of each fit's rows, split as
    scikit-learn's ShuffleSplit splits (the held-out count rounded up), stratified for a
    classifier, which then needs every class on both sides."""
    if params.get("early_stopping") is not True:
        return
    fraction = params.get("validation_fraction", DEFAULT_VALIDATION_FRACTION)
    if type(fraction) not in (int, float) or not 0 < fraction < 1:
        return  # the params check names it
    held_out = math.ceil(fraction * rows)
    kept = rows - held_out
    least = classes if classes is not None else 1
    if min(kept, held_out) < least:
        need = f"at least {classes} (one per class)" if classes is not None else "a row"
        raise ParamError(
            "validation_fraction",
            f"validation_fraction={fraction:g} of the {rows} rows one fit of this job sees "
            f"keeps {kept} to train on and holds out {held_out} for early stopping; each "
            f"needs {need}: choose a fraction nearer 0.5, fewer shards, or no early_stopping",
        )


_PRIOR_PARAM = {"gaussian_nb": "priors", "multinomial_nb": "class_prior"}
"""The naive Bayes parameter holding one prior per class, by merge."""


def _check_priors(param: str, params: Mapping[str, Any], classes: int) -> None:
    priors = params.get(param)
    # scikit-learn checks the length inside fit(): every shard of such a job would fail alike.
    if isinstance(priors, list) and len(priors) != classes:
        raise ParamError(
            param,
            f"{param} has {len(priors)} values; the dataset's target has {classes} classes "
            "(one prior per class, in the order of the sorted class labels)",
        )


def _check_forest(params: Mapping[str, Any], features: int, classes: int | None) -> None:
    max_features = params.get("max_features")
    # A count; a fraction or "sqrt" adapts to any number of features.
    if type(max_features) is int and max_features > features:
        raise ParamError(
            "max_features",
            f"max_features={max_features} exceeds the dataset's {features} features",
        )
    monotonic_cst = params.get("monotonic_cst")
    if isinstance(monotonic_cst, list) and len(monotonic_cst) != features:
        raise ParamError(
            "monotonic_cst",
            f"monotonic_cst has {len(monotonic_cst)} values; the dataset has {features} "
            "features (one value per feature)",
        )
    constrained = isinstance(monotonic_cst, list) and any(v != 0 for v in monotonic_cst)
    if constrained and classes is not None and classes > 2:
        raise ParamError(
            "monotonic_cst",
            f"monotonic constraints are not supported for multiclass classification, and the "
            f"dataset's target has {classes} classes (scikit-learn supports them for regression "
            "and binary classification); leave monotonic_cst out or all 0",
        )
