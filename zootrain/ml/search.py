"""Task parallelism: hyper-parameter search candidates, and the single-model baseline.

A search job's candidates are its tasks: each is cross-validated by whichever worker claims it,
and the merge keeps the best mean score and refits it on all training rows. The candidate list
is a pure function of the spec (grid order, or a seeded sample), so every worker agrees on what
candidate ``i`` is without it being written anywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The bounds of a search space (pure) live in zootrain.spec, which job records import.
# scikit-learn (and zootrain.ml.algorithms with it) is imported by the functions that use it.
from zootrain.spec import MAX_CANDIDATES as MAX_CANDIDATES
from zootrain.spec import MAX_SAMPLED_SPACE as MAX_SAMPLED_SPACE
from zootrain.spec import MAX_SEARCH_KEYS as MAX_SEARCH_KEYS
from zootrain.spec import candidate_count as candidate_count
from zootrain.spec import check_space as check_space
from zootrain.spec import space_size as space_size


def candidates(
    base: dict[str, Any],
    grid: dict[str, list[Any]] | None,
    distributions: dict[str, list[Any]] | None,
    n_iter: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Every candidate's full parameters (``base`` overridden by the candidate's own)."""
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    check_space(grid, distributions, n_iter)  # never expand an unbounded space
    if grid is not None:
        points = list(ParameterGrid(grid))
    elif distributions is not None:
        # Never more draws than points: what ParameterSampler does itself, minus its warning.
        draws = min(n_iter, space_size(distributions))
        points = list(ParameterSampler(distributions, n_iter=draws, random_state=seed))
    else:
        raise ValueError("a search needs param_grid or param_distributions")
    return [{**base, **{k: _plain(v) for k, v in point.items()}} for point in points]


def check_candidates(algorithm: str, params: list[dict[str, Any]]) -> None:
    """Validate every candidate as a job's params are validated (ParamError names the value)."""
    if not params:
        raise ValueError("the search has no candidate")
    if len(params) > MAX_CANDIDATES:
        raise ValueError(f"the search has {len(params)} candidates; at most {MAX_CANDIDATES}")
    from zootrain.ml.algorithms import validate_params

    for candidate in params:
        validate_params(algorithm, candidate)


def cross_validate(
    algorithm: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    *,
    folds: int,
    scoring: str | None,
    seed: int,
) -> dict[str, float]:
    from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

    from zootrain.ml.algorithms import ALGORITHMS, build_estimator

    estimator = build_estimator(algorithm, params, random_state=seed)
    classifier = ALGORITHMS[algorithm].task == "classification"
    splitter = (StratifiedKFold if classifier else KFold)(folds, shuffle=True, random_state=seed)
    scores = cross_val_score(estimator, X, y, cv=splitter, scoring=scoring, error_score="raise")
    return {"cv_mean": float(np.mean(scores)), "cv_std": float(np.std(scores))}


def best_candidate(scores: list[float]) -> int:
    """The index of the highest mean score; the first on a tie (deterministic)."""
    return int(np.argmax(np.asarray(scores)))


def baseline_params(algorithm: str, params: dict[str, Any], shards: int) -> dict[str, Any]:
    """A single model comparable to the merged one: a forest gets all the shards' trees."""
    from zootrain.ml.algorithms import ALGORITHMS

    if ALGORITHMS[algorithm].merge != "forest_union":
        return dict(params)
    trees = int(params.get("n_estimators", 100)) * shards
    return {**params, "n_estimators": trees}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
