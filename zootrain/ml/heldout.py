"""A merged forest scored from its shards' own predictions on the held-out rows.

A forest predicts the mean over its trees (class probabilities for a classifier, values for a
regressor), and the forest a merge builds pools the shards' trees (zootrain.ml.forest), so its
prediction of any row is the tree-count-weighted mean of the shard forests' predictions of that
row. A shard that scored itself on the job's whole held-out set, in the order the merge reads
it, has therefore already done the merged forest's work: the merge pools the shards' outputs
instead of running every row through every tree again (for a big forest, the larger part of the
time from the last shard to the publish).

Exact up to floating-point rounding: the merged forest sums its trees' probabilities in one
pass, the pool sums per-shard means, so the two agree to about 1e-16 (a row whose two best
classes tie exactly could in principle be broken the other way; tests/unit/test_ml_heldout.py
compares every score). It applies when every shard predicted the same rows: the shards of a
``replicate`` job (they read every training row anyway), and any job whose held-out set is no
larger than a shard's own slice of it (zootrain.ml.selection.eval_positions). Otherwise, or for
any other model, the merge predicts with the merged model as before.

The outputs travel inside the shard's model file, as one attribute of the estimator
(``ATTRIBUTE``: a dict of a str and a NumPy array, types skops trusts by default), which the
merge reads anyway; the merged forest is built from parameters and trees only
(``forest.merge_union``), so it never carries them.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from sklearn.ensemble._forest import BaseForest

from zootrain.ml import forest_walk

ATTRIBUTE = "zootrain_heldout_"


def rows_key(positions: np.ndarray) -> str:
    """Names a set of held-out rows in their order (the positions a reader takes them at)."""
    data = np.ascontiguousarray(positions, dtype=np.int64).tobytes()
    return hashlib.sha256(data).hexdigest()


def forest_outputs(model: Any, X: np.ndarray, task: str) -> np.ndarray | None:
    """What a forest predicts for ``X`` as its trees' mean: ``predict_proba`` (classifier) or
    ``predict`` (regressor); None for any other model, whose outputs do not pool."""
    if not isinstance(model, BaseForest) or getattr(model, "n_outputs_", 1) != 1:
        return None
    if task == "classification":
        return np.asarray(forest_walk.predict_proba(model, X), dtype=np.float64)
    return np.asarray(forest_walk.predict(model, X), dtype=np.float64)


def keep(model: Any, key: str, outputs: np.ndarray) -> None:
    """Store a shard forest's outputs on the held-out rows named by ``key`` in the model (and so
    in its file)."""
    setattr(model, ATTRIBUTE, {"rows": key, "outputs": outputs})


def kept(model: Any, key: str) -> np.ndarray | None:
    """The outputs a shard kept, if they are for the rows named by ``key``."""
    found = getattr(model, ATTRIBUTE, None)
    if not isinstance(found, dict) or found.get("rows") != key:
        return None
    outputs = found.get("outputs")
    return outputs if isinstance(outputs, np.ndarray) else None


def pooled(models: list[Any], key: str) -> np.ndarray | None:
    """The merged forest's outputs on the rows named by ``key``, pooled from its shards'
    (weighted by their tree counts), or None unless every shard kept outputs for those rows."""
    parts = [kept(m, key) for m in models]
    if not models or any(p is None for p in parts):
        return None
    shapes = {p.shape for p in parts if p is not None}
    if len(shapes) != 1:
        return None
    trees = np.array([len(m.estimators_) for m in models], dtype=np.float64)
    total = np.zeros(shapes.pop(), dtype=np.float64)
    for weight, part in zip(trees, parts, strict=True):
        total += weight * part
    out: np.ndarray = total / trees.sum()
    return out
