"""The algorithms zootrain can train, and validation of user-supplied parameters.

Parameters arrive as JSON from the API and are checked here, before any worker
starts, against the estimator's own constraints plus zootrain's limits.
"""

from __future__ import annotations

import difflib
import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import (
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.linear_model._logistic import _check_solver
from sklearn.naive_bayes import GaussianNB, MultinomialNB
from sklearn.utils._param_validation import InvalidParameterError

from zootrain.shape_bounds import DEFAULT_N_CLUSTERS, DEFAULT_VALIDATION_FRACTION
from zootrain.spec import (
    ALGORITHM_TABLE,
    AlgorithmInfo,
    AlgorithmTask,
    MergeKind,
    Task,
    logistic_penalty,
)
from zootrain.spec import ParamError as ParamError  # raised by validate_params

# Pure checks against the algorithm table, where this module's users have always found them.
from zootrain.spec import check_features as check_features
from zootrain.spec import check_task as check_task

MAX_N_ESTIMATORS = 2000
"""Trees per shard; the merged forest holds shards x n_estimators trees."""
MAX_DEPTH = 200
MAX_ITER = 100_000
"""Iterations of the iterative solvers (SGD epochs, lbfgs, Lloyd), per shard."""
MAX_N_CLUSTERS = 1000
MAX_N_INIT = 100
MAX_LIST_LENGTH = 500
MAX_STRING_LENGTH = 100
MAX_RANDOM_STATE = 2**32 - 1
MAX_INTEGER = 2**31 - 1
"""Every integer parameter: scikit-learn hands them to C (int, long, ssize_t), and a bigger
JSON integer is an OverflowError inside fit() on every worker, not a refusal at submit."""
MAX_LEAF_NODES = 100_000
"""A tree grown best-first allocates room for 2 x max_leaf_nodes nodes before it grows one:
10**9 asks for 64 GB per tree (None, no limit, grows its nodes as it needs them)."""
MAX_BOOTSTRAP_SAMPLES = 10_000_000
"""max_samples as a count: scikit-learn >= 1.9 draws that many indices per tree (8 bytes
each), more than the shard's rows if asked."""
MAX_SAMPLES_FRACTION = 1.0
"""max_samples as a fraction of a shard's rows: scikit-learn >= 1.9 takes any positive float,
and 1e308 x rows is infinity (OverflowError in fit()), 1e9 x rows an allocation of exabytes;
1.0 is also what scikit-learn < 1.9 (within our pins) allows, so a spec means the same on both."""

# Set by zootrain itself: one core per worker (n_jobs), seeds derived from the job
# (random_state), one fit per shard (warm_start), quiet logs (verbose). oob_score is
# out because out-of-bag rows of one shard are meaningless for the merged forest.
CONTROLLED_PARAMS = frozenset({"n_jobs", "random_state", "warm_start", "verbose", "oob_score"})

ParamCheck = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class Algorithm:
    name: str
    task: AlgorithmTask
    estimator: type[BaseEstimator]
    merge: MergeKind
    """Merge family in zootrain.ml.merge, e.g. "forest_union": how a shard is fitted
    for merging and how shard models are combined."""
    description: str = ""
    fixed: Mapping[str, Any] = field(default_factory=lambda: {"n_jobs": 1}, hash=False)
    """Parameters zootrain always sets besides random_state (where the estimator has
    them). n_jobs=1: each worker process trains one shard; parallelism is across
    workers."""
    replicable: bool = False
    """Shards may all train on every row (partition "replicate"): only for ensembles
    whose shards grow different members from their own seeds."""
    controlled: frozenset[str] = CONTROLLED_PARAMS
    ceilings: Mapping[str, float] = field(default_factory=dict, hash=False)
    """Upper bounds on numeric parameters, on top of the estimator's own constraints."""
    fraction_ceilings: Mapping[str, float] = field(default_factory=dict, hash=False)
    """Upper bounds on the non-integer values of parameters that take a count (an integer) or a
    fraction (a float), such as max_samples: the count's ceiling means nothing for the other."""
    checks: tuple[ParamCheck, ...] = ()
    """Checks on the full parameter set (defaults filled in), for rules that involve
    several parameters or that sklearn only enforces at fit time."""

    def default_params(self) -> dict[str, Any]:
        return dict(_default_params(self.name))

    def accepted_params(self) -> list[str]:
        return sorted(set(self.default_params()) - self.controlled)


@functools.cache
def _default_params(algorithm: str) -> Mapping[str, Any]:
    # Asking an estimator for its parameters inspects its __init__ signature: once is enough.
    return dict(ALGORITHMS[algorithm].estimator().get_params(deep=False))


def _check_max_samples(params: Mapping[str, Any]) -> None:
    # sklearn only rejects this combination inside fit(), i.e. on every worker.
    if params.get("max_samples") is not None and not params.get("bootstrap"):
        raise ParamError(
            "max_samples", "max_samples requires bootstrap=true (it sizes the bootstrap sample)"
        )


def _check_class_weight(params: Mapping[str, Any]) -> None:
    value = params.get("class_weight")
    if value is not None and not isinstance(value, str):
        raise ParamError(
            "class_weight",
            "class_weight must be 'balanced', 'balanced_subsample' or null; per-class "
            "weight mappings are not supported",
        )


def _check_monotonic_cst(params: Mapping[str, Any]) -> None:
    value = params.get("monotonic_cst")
    if value is None:
        return
    if not isinstance(value, list) or any(
        isinstance(v, bool) or v not in (-1, 0, 1) for v in value
    ):
        raise ParamError(
            "monotonic_cst",
            "monotonic_cst must be a list with one of -1, 0, 1 per feature",
        )


def _check_string(name: str, allowed: str) -> ParamCheck:
    # sklearn also takes arrays / callables here, which a JSON list would pass for.
    def check(params: Mapping[str, Any]) -> None:
        if not isinstance(params.get(name), str):
            raise ParamError(name, f"{name} must be one of {allowed}")

    return check


def _check_non_negative_list(name: str) -> ParamCheck:
    def check(params: Mapping[str, Any]) -> None:
        value = params.get(name)
        if isinstance(value, list) and not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in value
        ):
            raise ParamError(name, f"{name} must be a list of non-negative numbers")

    return check


def _check_priors(params: Mapping[str, Any]) -> None:
    # GaussianNB checks this in fit(), i.e. on every worker.
    priors = params.get("priors")
    if priors is not None and not math.isclose(sum(priors), 1.0, abs_tol=1e-8):
        raise ParamError("priors", f"priors must sum to 1, got {sum(priors):g}")


def _check_one_target(name: str) -> ParamCheck:
    # zootrain datasets have a single target, and sklearn wants one value per target.
    def check(params: Mapping[str, Any]) -> None:
        value = params.get(name)
        if isinstance(value, list) and len(value) != 1:
            raise ParamError(name, f"{name} must be a number (datasets have one target)")

    return check


def _check_not_positive(params: Mapping[str, Any]) -> None:
    if params.get("positive"):
        raise ParamError(
            "positive",
            "positive=true is not supported: shard models are merged exactly by solving "
            "the unconstrained normal equations of all rows",
        )


def _check_ridge_solver(params: Mapping[str, Any]) -> None:
    # sklearn only allows lbfgs together with positive=true, which zootrain refuses.
    if params.get("solver") == "lbfgs":
        raise ParamError("solver", "solver='lbfgs' requires positive=true, which is not supported")


def _check_sgd(estimator: type[BaseEstimator]) -> ParamCheck:
    """sklearn's own cross-parameter checks for SGD, which it only runs inside fit()."""

    def check(params: Mapping[str, Any]) -> None:
        try:
            estimator(**params)._more_validate_params()
        except ValueError as exc:
            raise ParamError(_named_in(str(exc), params), str(exc)) from None

    return check


def _check_logistic_solver(params: Mapping[str, Any]) -> None:
    """Solver / penalty / dual compatibility, which LogisticRegression checks in fit()."""
    try:
        _check_solver(params.get("solver"), logistic_penalty(params), params.get("dual"))
    except ValueError as exc:
        raise ParamError("solver", str(exc)) from None
    # liblinear stops at tol and refuses 0 ("eps <= 0") only inside fit(), in every shard.
    if params.get("solver") == "liblinear" and params.get("tol") == 0:
        raise ParamError("tol", "solver 'liblinear' needs tol > 0")


def _named_in(message: str, params: Mapping[str, Any]) -> str:
    """The parameter a sklearn message names first (messages name the culprits)."""
    found = [(message.find(name), name) for name in params if name in message]
    return min(found)[1] if found else "params"


_FOREST_CEILINGS: Mapping[str, float] = {
    "n_estimators": MAX_N_ESTIMATORS,
    "max_depth": MAX_DEPTH,
    "max_leaf_nodes": MAX_LEAF_NODES,
    "max_samples": MAX_BOOTSTRAP_SAMPLES,
}
_FOREST_FRACTION_CEILINGS: Mapping[str, float] = {"max_samples": MAX_SAMPLES_FRACTION}
_FOREST_CHECKS: tuple[ParamCheck, ...] = (
    _check_max_samples,
    _check_class_weight,
    _check_monotonic_cst,
)


def _forest(name: str, task: Task, estimator: type[BaseEstimator], description: str) -> Algorithm:
    return Algorithm(
        name=name,
        task=task,
        estimator=estimator,
        merge="forest_union",
        description=description,
        ceilings=_FOREST_CEILINGS,
        fraction_ceilings=_FOREST_FRACTION_CEILINGS,
        checks=_FOREST_CHECKS,
        replicable=True,
    )


_ITER_CEILING: Mapping[str, float] = {"max_iter": MAX_ITER}


ALGORITHMS: dict[str, Algorithm] = {
    a.name: a
    for a in (
        _forest(
            "random_forest_classifier",
            "classification",
            RandomForestClassifier,
            "Random forest; shard forests are merged by pooling their trees.",
        ),
        _forest(
            "random_forest_regressor",
            "regression",
            RandomForestRegressor,
            "Random forest; shard forests are merged by pooling their trees.",
        ),
        _forest(
            "extra_trees_classifier",
            "classification",
            ExtraTreesClassifier,
            "Extremely randomized trees; merged by pooling their trees.",
        ),
        _forest(
            "extra_trees_regressor",
            "regression",
            ExtraTreesRegressor,
            "Extremely randomized trees; merged by pooling their trees.",
        ),
        Algorithm(
            name="sgd_classifier",
            task="classification",
            estimator=SGDClassifier,
            merge="linear_average",
            description="Linear model trained by SGD (one-vs-rest); merged by averaging "
            "coefficients weighted by shard rows (approximate).",
            ceilings=_ITER_CEILING,
            checks=(_check_class_weight, _check_sgd(SGDClassifier)),
        ),
        Algorithm(
            name="sgd_regressor",
            task="regression",
            estimator=SGDRegressor,
            merge="linear_average",
            description="Linear model trained by SGD; merged by averaging coefficients "
            "weighted by shard rows (approximate).",
            ceilings=_ITER_CEILING,
            checks=(_check_sgd(SGDRegressor),),
        ),
        Algorithm(
            name="logistic_regression",
            task="classification",
            estimator=LogisticRegression,
            merge="softmax_average",
            description="(Multinomial) logistic regression; merged by averaging "
            "coefficients weighted by shard rows (approximate).",
            # n_jobs has no effect since scikit-learn 1.8 and setting it warns.
            fixed={},
            ceilings=_ITER_CEILING,
            checks=(_check_class_weight, _check_logistic_solver),
        ),
        Algorithm(
            name="linear_regression",
            task="regression",
            estimator=LinearRegression,
            merge="normal_equations",
            description="Ordinary least squares; merged exactly from per-shard sufficient "
            "statistics (equals a fit on all rows).",
            checks=(_check_not_positive,),
        ),
        Algorithm(
            name="ridge",
            task="regression",
            estimator=Ridge,
            merge="normal_equations",
            description="Ridge regression; merged exactly from per-shard sufficient "
            "statistics (equals a fit on all rows).",
            ceilings=_ITER_CEILING,
            checks=(
                _check_not_positive,
                _check_ridge_solver,
                _check_one_target("alpha"),
                _check_non_negative_list("alpha"),
            ),
        ),
        Algorithm(
            name="gaussian_nb",
            task="classification",
            estimator=GaussianNB,
            merge="gaussian_nb",
            description="Gaussian naive Bayes; merged exactly from per-class counts, "
            "means and variances (equals a fit on all rows).",
            checks=(_check_non_negative_list("priors"), _check_priors),
        ),
        Algorithm(
            name="multinomial_nb",
            task="classification",
            estimator=MultinomialNB,
            merge="multinomial_nb",
            description="Multinomial naive Bayes for non-negative features (counts); "
            "merged exactly by summing counts (equals a fit on all rows).",
            checks=(_check_non_negative_list("class_prior"), _check_non_negative_list("alpha")),
        ),
        Algorithm(
            name="kmeans",
            task="clustering",
            estimator=KMeans,
            merge="kmeans_centroids",
            description="k-means; merged by a weighted k-means over all shards' centroids "
            "(approximate). Fits any dataset; the target is only used for scoring.",
            ceilings={"n_clusters": MAX_N_CLUSTERS, "max_iter": MAX_ITER, "n_init": MAX_N_INIT},
            checks=(_check_string("init", "'k-means++' or 'random'"),),
        ),
    )
}


def _plain_table() -> dict[str, AlgorithmInfo]:
    return {
        a.name: AlgorithmInfo(a.name, a.task, a.merge, a.replicable) for a in ALGORITHMS.values()
    }


# zootrain.spec's table (what processes without scikit-learn know) must say what this one does.
if _plain_table() != ALGORITHM_TABLE or tuple(ALGORITHMS) != tuple(ALGORITHM_TABLE):
    raise RuntimeError(f"zootrain.spec.ALGORITHM_TABLE is not {_plain_table()}")
# So must zootrain.shape_bounds' default cluster count (a spec that leaves n_clusters out).
if KMeans().n_clusters != DEFAULT_N_CLUSTERS:
    raise RuntimeError(f"zootrain.shape_bounds.DEFAULT_N_CLUSTERS is not {KMeans().n_clusters}")
# And its default early-stopping fraction, for SGD (both estimators share it).
for _sgd in (SGDClassifier, SGDRegressor):
    if _sgd().validation_fraction != DEFAULT_VALIDATION_FRACTION:
        raise RuntimeError(
            f"zootrain.shape_bounds.DEFAULT_VALIDATION_FRACTION is not {_sgd().validation_fraction}"
        )


def get_algorithm(name: str) -> Algorithm:
    try:
        return ALGORITHMS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown algorithm {name!r}; known algorithms: {', '.join(sorted(ALGORITHMS))}"
        ) from None


def validate_params(algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check user parameters for `algorithm`; return a cleaned copy (plain JSON types).

    Raises ValueError for an unknown algorithm and ParamError for anything wrong
    with a parameter.
    """
    alg = get_algorithm(algorithm)
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a JSON object, got {type(params).__name__}")
    defaults = alg.default_params()
    accepted = alg.accepted_params()
    cleaned: dict[str, Any] = {}
    for name, raw in params.items():
        if not isinstance(name, str):
            raise ParamError(str(name), f"parameter names must be strings, got {name!r}")
        if name in alg.controlled and name in defaults:
            raise ParamError(
                name,
                f"{name} cannot be set: zootrain sets it"
                + (" (from the job's seed)" if name == "random_state" else ""),
            )
        if name not in defaults:
            # Case first: difflib finds nothing close to a one-letter name like "c" (C).
            close = [a for a in accepted if a.lower() == name.lower()]
            close = close or difflib.get_close_matches(name, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParamError(
                name,
                f"unknown parameter {name!r} for {alg.name}{hint}; accepted: {', '.join(accepted)}",
            )
        value = _to_json_value(name, raw)
        _check_estimator_constraint(alg, name, value)
        _check_ceiling(alg, name, value)
        cleaned[name] = value

    effective = {**defaults, **cleaned}
    for check in alg.checks:
        check(effective)
    return cleaned


def build_estimator(algorithm: str, params: dict[str, Any], random_state: int) -> BaseEstimator:
    """An unfitted estimator with validated params, the given seed and one core."""
    alg = get_algorithm(algorithm)
    cleaned = validate_params(algorithm, params)
    if isinstance(random_state, bool) or not 0 <= random_state <= MAX_RANDOM_STATE:
        raise ValueError(f"random_state must be in [0, {MAX_RANDOM_STATE}], got {random_state}")
    defaults = alg.default_params()
    if "random_state" in defaults:
        cleaned["random_state"] = int(random_state)
    cleaned.update({name: value for name, value in alg.fixed.items() if name in defaults})
    return alg.estimator(**cleaned)


def _to_json_value(name: str, value: Any) -> Any:
    """A copy of value as plain JSON scalars / a flat list of them, or ParamError."""
    if isinstance(value, list | tuple):
        if len(value) > MAX_LIST_LENGTH:
            raise ParamError(name, f"{name} has {len(value)} items; the limit is {MAX_LIST_LENGTH}")
        return [_to_json_scalar(name, v) for v in value]
    return _to_json_scalar(name, value)


def _to_json_scalar(name: str, value: Any) -> Any:
    # Subclasses (np.float64, IntEnum, ...) are narrowed to the builtin type so the
    # stored params and the saved model only hold plain values.
    if value is None:
        return None
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ParamError(name, f"{name} must be a finite number, got {value}")
        return float(value)
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise ParamError(name, f"{name} is longer than {MAX_STRING_LENGTH} characters")
        return str(value)
    raise ParamError(
        name,
        f"{name} must be a JSON number, string, boolean, null or a list of those; "
        f"got {type(value).__name__}",
    )


def _accepts_bool(alg: Algorithm, name: str) -> bool:
    constraints = getattr(alg.estimator, "_parameter_constraints", {}).get(name, [])
    if constraints == "no_validation":
        return True
    return any(c == "boolean" or c is bool for c in constraints)


def _check_estimator_constraint(alg: Algorithm, name: str, value: Any) -> None:
    # value is plain JSON here (_to_json_value): its JSON text is an exact key for the cache.
    message = _constraint_error(alg.name, name, json.dumps(value))
    if message is not None:
        raise ParamError(name, message)


@functools.lru_cache(maxsize=8192)
def _constraint_error(algorithm: str, name: str, value_json: str) -> str | None:
    """What scikit-learn says about one parameter value, remembered: a search's candidates
    repeat the same few values, and asking scikit-learn costs about 0.3 ms each time."""
    alg = ALGORITHMS[algorithm]
    value = json.loads(value_json)
    # Python's bool is an int, so sklearn's Interval(Integral, ...) would take
    # n_estimators=true; only let booleans through where sklearn asks for one.
    if isinstance(value, bool) and not _accepts_bool(alg, name):
        return f"{name} does not take a boolean, got {str(value).lower()}"
    try:
        # One parameter at a time, so the error can name the offending one.
        alg.estimator(**{name: value})._validate_params()
    except (InvalidParameterError, TypeError, ValueError) as exc:
        return str(exc)
    return None


def ceiling_of(alg: Algorithm, name: str, integer: bool) -> float:
    """zootrain's upper bound on an integer (or non-integer) value of parameter ``name``."""
    if integer:
        return min(alg.ceilings.get(name, MAX_INTEGER), MAX_INTEGER)
    return min(alg.ceilings.get(name, math.inf), alg.fraction_ceilings.get(name, math.inf))


def _check_ceiling(alg: Algorithm, name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return
    integer = isinstance(value, int)
    limit = ceiling_of(alg, name, integer)
    if value > limit:
        shown = f"{int(limit)}" if integer or limit == int(limit) else f"{limit:g}"
        kind = "" if integer or name not in alg.fraction_ceilings else " (as a fraction)"
        raise ParamError(name, f"{name}={value} exceeds zootrain's limit of {shown}{kind}")
