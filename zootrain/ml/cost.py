"""What a job will cost, reckoned from its spec alone at submit: the admission check.

Every figure is computed from the validated spec without reading any data, and compared with
the operator's ceilings (``ZOOTRAIN_MAX_*``). A spec can pass every per-parameter limit and still
ask for far too much in total: 64 replicated shards of 2,000 trees each plus a baseline is
256,000 trees, each grown on every training row. Per-attempt time and memory limits are the
workers' business; this check keeps such a job out of the queue in the first place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zootrain.spec import SyntheticDataset

if TYPE_CHECKING:
    from zootrain.spec import JobSpec


@dataclass(frozen=True)
class Ceilings:
    """The operator's limits (zootrain.settings: ZOOTRAIN_MAX_TREES and the rest)."""

    max_trees: int
    max_synthetic_cells: int
    max_attempts: int
    max_kmeans_work: int


@dataclass(frozen=True)
class Cost:
    trees: int
    """Trees grown over every task: shards, baseline, and each search candidate once per fold
    plus the refit of the best (0 for other families)."""
    synthetic_cells: int
    """n_samples x n_features of a synthetic dataset, which every training child generates in
    full before it takes its shard (0 for other datasets)."""
    kmeans_work: int
    """k-means: n_init x max_iter x n_clusters of the largest single fit (0 for others)."""
    attempts: int


def job_cost(spec: JobSpec) -> Cost:
    from zootrain.ml.algorithms import ALGORITHMS

    algorithm = ALGORITHMS[spec.algorithm]
    defaults = algorithm.default_params()
    if spec.kind == "search":
        assert spec.search is not None
        # Each candidate is fitted once per fold; the best is fitted again on all rows.
        fits = [({**defaults, **p}, spec.search.cv) for p in spec.candidate_params()]
        refit = max(fits, key=lambda fit: _trees(algorithm.merge, fit[0]), default=None)
        if refit is not None:
            fits.append((refit[0], 1))
    else:
        params = {**defaults, **spec.params}
        fits = [(params, spec.shards)]
        if spec.baseline:
            fits.append((params, spec.shards))  # the baseline forest has every shard's trees
    cells = 0
    if isinstance(spec.dataset, SyntheticDataset):
        cells = spec.dataset.n_samples * spec.dataset.n_features
    return Cost(
        trees=sum(_trees(algorithm.merge, params) * times for params, times in fits),
        synthetic_cells=cells,
        kmeans_work=max((_kmeans_work(spec.algorithm, params) for params, _ in fits), default=0),
        attempts=spec.max_attempts,
    )


def over_ceilings(cost: Cost, ceilings: Ceilings) -> list[str]:
    """One sentence per figure past its ceiling, naming both and the setting (empty: admitted)."""
    checks = [
        ("trees in all (shards, baseline, candidates x folds)", cost.trees, ceilings.max_trees,
         "ZOOTRAIN_MAX_TREES"),
        ("synthetic dataset n_samples x n_features", cost.synthetic_cells,
         ceilings.max_synthetic_cells, "ZOOTRAIN_MAX_SYNTHETIC_CELLS"),
        ("max_attempts", cost.attempts, ceilings.max_attempts, "ZOOTRAIN_MAX_ATTEMPTS"),
        ("k-means n_init x max_iter x n_clusters", cost.kmeans_work, ceilings.max_kmeans_work,
         "ZOOTRAIN_MAX_KMEANS_WORK"),
    ]  # fmt: skip
    return [
        f"{what} is {figure:,}, over this server's ceiling of {ceiling:,} ({setting})"
        for what, figure, ceiling, setting in checks
        if figure > ceiling
    ]


def _trees(merge: str, params: dict[str, Any]) -> int:
    return int(params["n_estimators"]) if merge == "forest_union" else 0


def _kmeans_work(algorithm: str, params: dict[str, Any]) -> int:
    if algorithm != "kmeans":
        return 0
    n_init = params["n_init"]
    if n_init == "auto":
        # scikit-learn's "auto": one run for k-means++ seeding, ten for random seeding.
        n_init = 1 if params["init"] == "k-means++" else 10
    return int(n_init) * int(params["max_iter"]) * int(params["n_clusters"])
