"""Task parallelism: hyper-parameter search candidates, and the single-model baseline.

A search job's candidates are its tasks: each is cross-validated by whichever worker claims it,
and the merge keeps the best mean score and refits it on all training rows. The candidate list
is a pure function of the spec (grid order, or a seeded sample), so every worker agrees on what
candidate ``i`` is without it being written anywhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# scikit-learn (and zootrain.ml.algorithms with it) is imported by the functions that use it:
# job records import this module, in processes that never train.

MAX_CANDIDATES = 256
MAX_SEARCH_KEYS = 16
"""Parameters a search may vary: more than any estimator zootrain trains has."""
MAX_SAMPLED_SPACE = 10**15
"""Points of a param_distributions space. ParameterSampler indexes the space's points with a
C integer (2**63 - 1): a bigger space fails inside scikit-learn instead of being sampled."""


def space_size(space: dict[str, list[Any]]) -> int:
    """The number of points of a grid: the product of its lists' lengths, never the points."""
    return math.prod(len(values) for values in space.values())


def candidate_count(
    grid: dict[str, list[Any]] | None, distributions: dict[str, list[Any]] | None, n_iter: int
) -> int:
    """How many candidates ``candidates`` would make, computed without making them."""
    if grid is not None:
        return space_size(grid)
    if distributions is not None:
        # ParameterSampler draws lists without replacement: never more than the space holds.
        return min(n_iter, space_size(distributions))
    raise ValueError("a search needs param_grid or param_distributions")


def check_space(
    grid: dict[str, list[Any]] | None, distributions: dict[str, list[Any]] | None, n_iter: int
) -> int:
    """Refuse a search space that is too large *before* anything expands it; its count.

    A grid's candidates are the product of its lists' lengths: four lists of 50 values are 6.25
    million candidates, which scikit-learn's ParameterGrid would build (seconds of CPU and GBs of
    memory) before any check on the list of them could run.
    """
    space = grid if grid is not None else distributions
    if space is None:
        raise ValueError("a search needs param_grid or param_distributions")
    if len(space) > MAX_SEARCH_KEYS:
        raise ValueError(f"the search varies {len(space)} parameters; at most {MAX_SEARCH_KEYS}")
    if grid is not None:
        count = space_size(grid)
        if count > MAX_CANDIDATES:
            lengths = " x ".join(str(len(v)) for v in grid.values())
            raise ValueError(
                f"param_grid has {count:,} candidates ({lengths}); at most {MAX_CANDIDATES}"
            )
        return count
    points = space_size(space)
    if points > MAX_SAMPLED_SPACE:
        raise ValueError(
            f"param_distributions spans {points:.3g} points; at most {MAX_SAMPLED_SPACE:.0e}"
        )
    return min(n_iter, points)


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
