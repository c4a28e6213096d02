"""The arithmetic of training in rounds: what a shard computes each round, and how a round's
shard results are combined into the next round's parameters.

Every round, each shard evaluates the current parameters on its rows (``local``) and one
process sums the results (``combine``), which yields the parameters of the next round or the
final model. Both run in training children (numpy, scipy, scikit-learn); the worker's own
process only moves their bytes (``pack`` / ``unpack``) between ZooKeeper and the children.
The coordination is zootrain/rounds.py.

Families:
    logistic_regression  distributed L-BFGS: shards return their summed loss and gradient,
                         and scipy's L-BFGS-B (the optimizer scikit-learn's lbfgs solver runs,
                         with its options) takes the step. The round record keeps every
                         evaluation, so any worker may combine a round: by replaying the
                         optimizer over them (it is deterministic), or, in a child that
                         combined before, by feeding the live optimizer it kept (Memory) only
                         the evaluations it has not seen.
    kmeans               distributed Lloyd: shards return per-cluster sums and counts and their
                         inertia at the current centroids; scikit-learn's stopping rule.
    sgd_classifier,      iterative parameter mixing: each round every shard runs one epoch of
    sgd_regressor        SGD from the mixed parameters; the shards' parameters are averaged,
                         weighted by rows.
"""

from __future__ import annotations

import io
import json
import math
import queue
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize
from sklearn.base import BaseEstimator
from sklearn.cluster import kmeans_plusplus
from sklearn.linear_model import LogisticRegression
from sklearn.linear_model._linear_loss import LinearModelLoss
from sklearn.utils import check_random_state

from zootrain.ml.algorithms import build_estimator, get_algorithm
from zootrain.ml.training import shard_seed
from zootrain.spec import logistic_penalty

State = dict[str, Any]
"""Numpy arrays and JSON scalars (under "meta"): what pack() stores."""


def pack(state: State) -> bytes:
    """Arrays as one .npz, scalars as JSON inside it: no pickle crosses a boundary."""
    arrays = {k: np.asarray(v) for k, v in state.items() if k != "meta"}
    meta = json.dumps(state.get("meta", {})).encode()
    buffer = io.BytesIO()
    arrays["__meta__"] = np.frombuffer(meta, dtype=np.uint8)
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def unpack(data: bytes) -> State:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        state: State = {k: npz[k] for k in npz.files if k != "__meta__"}
        state["meta"] = json.loads(npz["__meta__"].tobytes().decode())
    return state


@dataclass(frozen=True)
class Step:
    """What a combine decided: the next round's state, or the final one (``done``)."""

    state: State
    done: bool
    objective: float
    change: float
    """Gradient norm (L-BFGS), centroid shift (Lloyd), parameter change (mixing)."""


FAMILIES = ("logistic_regression", "kmeans", "sgd_classifier", "sgd_regressor")
SGD = ("sgd_classifier", "sgd_regressor")


def _params(algorithm: str, params: dict[str, Any]) -> dict[str, Any]:
    return {**get_algorithm(algorithm).default_params(), **params}


# -- logistic regression: L-BFGS over summed shard gradients ------------------------------------


class _NeedEvaluation(Exception):
    """Raised by the replayed objective when the optimizer asks for a point not evaluated yet."""

    def __init__(self, x: np.ndarray) -> None:
        super().__init__()
        self.x = np.array(x, dtype=np.float64)


def _logistic_loss(n_classes: int, fit_intercept: bool) -> LinearModelLoss:
    # scikit-learn's own objective, so that the optimum is the one its lbfgs solver finds.
    from sklearn._loss.loss import HalfBinomialLoss, HalfMultinomialLoss

    base = HalfBinomialLoss() if n_classes <= 2 else HalfMultinomialLoss(n_classes=n_classes)
    return LinearModelLoss(base_loss=base, fit_intercept=fit_intercept)


def _logistic_target(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    target: np.ndarray
    if len(classes) <= 2:
        target = (y == classes[-1]).astype(np.float64)
    else:
        target = np.searchsorted(classes, y).astype(np.float64)
    return target


def _penalty_mask(n_classes: int, n_features: int, fit_intercept: bool) -> np.ndarray:
    """1 where the L2 penalty applies, in scikit-learn's layout of the flat coefficients
    (binary: [coef, intercept]; multinomial: (classes, features+1) raveled in F order)."""
    width = n_features + int(fit_intercept)
    if n_classes <= 2:
        mask = np.ones(width)
        if fit_intercept:
            mask[-1] = 0.0
        return mask
    grid = np.ones((n_classes, width))
    if fit_intercept:
        grid[:, -1] = 0.0
    return grid.ravel(order="F")


def logistic_local(
    params: dict[str, Any], X: np.ndarray, y: np.ndarray, classes: np.ndarray, w: np.ndarray
) -> State:
    """The shard's summed loss and summed gradient at ``w`` (no penalty, no averaging)."""
    p = _params("logistic_regression", params)
    loss = _logistic_loss(len(classes), bool(p["fit_intercept"]))
    value, grad = loss.loss_gradient(w, X, _logistic_target(y, classes), None, 0.0)
    n = len(X)
    return {"loss": np.float64(value * n), "grad": grad * n, "meta": {"rows": n}}


def logistic_start(params: dict[str, Any], n_features: int, classes: np.ndarray) -> State:
    p = _params("logistic_regression", params)
    size = n_features + int(p["fit_intercept"])
    width = size if len(classes) <= 2 else size * len(classes)
    return {
        "x": np.zeros(width),
        "losses": np.zeros(0),
        "grads": np.zeros((0, width)),
        "meta": {"n_features": n_features, "n_classes": len(classes)},
    }


LbfgsOptions = Any
"""scipy's options for L-BFGS-B (a TypedDict of its stubs, which runtime code cannot name)."""


def _lbfgs_options(p: dict[str, Any]) -> LbfgsOptions:
    # What scikit-learn's lbfgs solver passes (sklearn.linear_model._logistic).
    return {
        "maxiter": int(p["max_iter"]),
        "maxls": 50,
        "gtol": float(p["tol"]),
        "ftol": 64 * np.finfo(float).eps,
    }


LBFGS_THREAD = "zootrain-lbfgs"


class _Abandoned(Exception):
    """Unwinds a live optimizer's thread that nobody will feed again."""


class LiveLBFGS:
    """scipy's L-BFGS-B kept running between rounds, so that a combine costs one optimizer step
    instead of a replay of every step so far.

    ``scipy.optimize.minimize`` runs in a thread of the combining process and its objective
    blocks there until the round's evaluation is fed: the optimizer is the public one, called
    once, with the same evaluations in the same order as a replay feeds it, so its trajectory is
    the replay's, bit for bit. (scipy's own reverse-communication routine is private, and its
    interface changed in 1.15; a thread keeps to the public API.)
    """

    def __init__(self, x0: np.ndarray, options: LbfgsOptions) -> None:
        self._asks: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._answers: queue.SimpleQueue[tuple[float, np.ndarray] | None] = queue.SimpleQueue()
        self.fed = 0
        """Evaluations fed so far."""
        self.pending: np.ndarray | None = None
        """The point the optimizer asks to be evaluated next (None once it has finished)."""
        self.result: optimize.OptimizeResult | None = None
        self._thread = threading.Thread(
            target=self._run,
            args=(np.array(x0, dtype=np.float64), options),
            name=LBFGS_THREAD,
            daemon=True,
        )
        self._thread.start()
        self._take()

    def _objective(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self._asks.put(("ask", np.array(x, dtype=np.float64)))
        answer = self._answers.get()
        if answer is None:
            raise _Abandoned
        return answer

    def _run(self, x0: np.ndarray, options: LbfgsOptions) -> None:
        try:
            result = optimize.minimize(
                self._objective, x0, method="L-BFGS-B", jac=True, options=options
            )
        except _Abandoned:
            return
        except Exception as exc:  # handed to the feeding thread, which raises it
            self._asks.put(("error", exc))
            return
        self._asks.put(("done", result))

    def _take(self) -> None:
        kind, value = self._asks.get()
        if kind == "error":
            self.pending = None
            raise value
        if kind == "done":
            self.pending, self.result = None, value
        else:
            self.pending = value

    def feed(self, loss: float, grad: np.ndarray) -> None:
        """The evaluation at ``pending``; the optimizer then asks for its next point or ends."""
        if self.pending is None:
            raise RuntimeError("the optimizer has finished: it takes no more evaluations")
        self._answers.put((loss, grad))
        self.fed += 1
        self._take()

    def close(self) -> None:
        """End the thread (an optimizer still asking is unwound)."""
        if self.pending is not None:
            self.pending = None
            self._answers.put(None)
        self._thread.join()


class Memory:
    """What a process that combines rounds may keep between them (a training child keeps one for
    its job): the live L-BFGS. Empty is always correct (the combine then replays the record);
    kept, it is checked against each round's record before it is trusted."""

    def __init__(self) -> None:
        self.lbfgs: LiveLBFGS | None = None

    def close(self) -> None:
        if self.lbfgs is not None:
            self.lbfgs.close()
            self.lbfgs = None


def logistic_combine(
    params: dict[str, Any], state: State, results: list[State], memory: Memory | None = None
) -> Step:
    """Add this round's evaluation to the record and step L-BFGS-B to its next point: the
    ``memory``'s live optimizer when it has one in step with the record, else a replay."""
    p = _params("logistic_regression", params)
    meta = state["meta"]
    rows = sum(int(r["meta"]["rows"]) for r in results)
    x = state["x"]
    fit_intercept = bool(p["fit_intercept"])
    mask = _penalty_mask(meta["n_classes"], meta["n_features"], fit_intercept)
    # scikit-learn's scaling (sklearn.linear_model._logistic): the mean loss over all rows plus
    # 1 / (2 C n) times the squared weights, the intercept unpenalised; penalty None ignores C.
    # (An L1 or elastic-net penalty never trains in rounds: zootrain.spec.one_shot_only.)
    l2 = 0.0 if logistic_penalty(p) is None else 1.0 / (float(p["C"]) * rows)
    loss = float(sum(float(r["loss"]) for r in results)) / rows + 0.5 * l2 * float(
        np.dot(mask * x, x)
    )
    grad = np.sum([r["grad"] for r in results], axis=0) / rows + l2 * mask * x
    # The record keeps every evaluation: whoever combines next may have no live optimizer.
    losses = np.append(state["losses"], loss)
    grads = np.vstack([state["grads"], grad])
    recorded = {**state, "losses": losses, "grads": grads}
    norm = float(np.max(np.abs(grad)))
    options = _lbfgs_options(p)
    if memory is None:
        replayed = _replay(options, losses, grads, x)
        if isinstance(replayed, np.ndarray):
            return Step({**recorded, "x": replayed}, False, loss, norm)
        result = replayed
    else:
        live = _in_step(memory, options, state)
        live.feed(losses[-1], grads[-1])
        if live.pending is not None:
            return Step({**recorded, "x": live.pending}, False, loss, norm)
        assert live.result is not None
        result = live.result
        memory.close()
    final = {**recorded, "x": np.asarray(result.x)}
    final["meta"] = {**meta, "n_iter": int(result.nit)}
    return Step(final, True, loss, norm)


def _in_step(memory: Memory, options: LbfgsOptions, state: State) -> LiveLBFGS:
    """The memory's live optimizer, brought up to the record (fed the evaluations that other
    processes combined since it last ran) and asking for the point the shards just evaluated;
    rebuilt from the whole record, a replay, when it has none or is not in step with it."""
    live = memory.lbfgs
    if live is not None and _caught_up(live, state):
        return live
    memory.close()
    live = memory.lbfgs = LiveLBFGS(np.zeros_like(np.asarray(state["x"])), options)
    if _caught_up(live, state):
        return live
    memory.close()
    raise RuntimeError("the L-BFGS replay diverged from the recorded evaluations")


def _caught_up(live: LiveLBFGS, state: State) -> bool:
    losses, grads = state["losses"], state["grads"]
    if live.fed > len(losses):
        return False  # it combined a round whose multi lost, or another job's: not this record
    while live.fed < len(losses) and live.pending is not None:
        live.feed(float(losses[live.fed]), grads[live.fed])
    # equal_nan: a C so small that 1/C overflows makes the first evaluation NaN, and L-BFGS-B
    # then asks for NaN points until it gives up (scikit-learn's own fit does the same).
    return live.pending is not None and np.array_equal(live.pending, state["x"], equal_nan=True)


def _replay(
    options: LbfgsOptions, losses: np.ndarray, grads: np.ndarray, x: np.ndarray
) -> np.ndarray | optimize.OptimizeResult:
    """Replay L-BFGS-B over every recorded evaluation, from the start: the point it asks for
    next, or its result if it finishes on the last one. The last evaluation's point must be
    ``x``, the point the shards just evaluated."""
    evaluations = 0
    asked: list[np.ndarray] = []

    def replay(point: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        if evaluations == len(losses):
            raise _NeedEvaluation(point)
        asked.append(np.array(point))
        evaluations += 1
        gradient: np.ndarray = grads[evaluations - 1]
        return float(losses[evaluations - 1]), gradient

    try:
        result = optimize.minimize(
            replay, np.zeros(len(x)), method="L-BFGS-B", jac=True, options=options
        )
    except _NeedEvaluation as need:
        _check_replay(asked, x)
        return need.x
    _check_replay(asked, x)
    return result


def _check_replay(asked: list[np.ndarray], x: np.ndarray) -> None:
    # The point the replay asks for last must be the one the shards just evaluated: if it is
    # not, the optimizer is not deterministic here (another scipy), and the record is unusable.
    if not asked or not np.array_equal(asked[-1], x, equal_nan=True):
        raise RuntimeError("the L-BFGS replay diverged from the recorded evaluations")


def logistic_model(
    params: dict[str, Any], state: State, classes: np.ndarray, random_state: int
) -> BaseEstimator:
    model: Any = build_estimator("logistic_regression", params, random_state)
    assert isinstance(model, LogisticRegression)
    meta = state["meta"]
    n_features, n_classes = int(meta["n_features"]), len(classes)
    w = np.asarray(state["x"])
    grid = w.reshape(1, -1) if n_classes <= 2 else w.reshape((n_classes, -1), order="F")
    model.classes_ = np.asarray(classes)
    model.coef_ = np.ascontiguousarray(grid[:, :n_features])
    model.intercept_ = grid[:, n_features] if model.fit_intercept else np.zeros(len(grid))
    model.n_features_in_ = n_features
    model.n_iter_ = np.array([int(meta.get("n_iter", 0))], dtype=np.int32)
    return model


# -- k-means: distributed Lloyd -----------------------------------------------------------------


def kmeans_start(params: dict[str, Any], X: np.ndarray, job_seed: int) -> State:
    """Initial centroids from shard 0's rows, as scikit-learn seeds them (k-means++ or random),
    with shard 0's seed."""
    p = _params("kmeans", params)
    k = int(p["n_clusters"])
    if len(X) < k:
        raise ValueError(f"kmeans with n_clusters={k} needs at least {k} rows in shard 0")
    rng = check_random_state(shard_seed(job_seed, 0))
    if p["init"] == "random":
        centres = X[rng.permutation(len(X))[:k]].astype(np.float64)
    else:
        centres, _ = kmeans_plusplus(X.astype(np.float64), k, random_state=rng)
    return {
        "x": centres,
        "init": centres,
        "meta": {"n_features": int(X.shape[1]), "iteration": 0, "final": False},
    }


def kmeans_local(X: np.ndarray, centres: np.ndarray) -> State:
    """Per-cluster sums and counts of the shard's rows at ``centres``, and their inertia; the
    first round also the per-feature moments that scale scikit-learn's tolerance."""
    X = X.astype(np.float64)
    # Squared distances by the expansion scikit-learn uses; rows as many as a shard holds.
    d = (
        np.einsum("ij,ij->i", X, X)[:, None]
        - 2.0 * X @ centres.T
        + np.einsum("ij,ij->i", centres, centres)[None, :]
    )
    labels = np.argmin(d, axis=1)
    k = len(centres)
    sums = np.zeros_like(centres)
    np.add.at(sums, labels, X)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    inertia = float(np.sum(np.maximum(d[np.arange(len(X)), labels], 0.0)))
    return {
        "sums": sums,
        "counts": counts,
        "inertia": np.float64(inertia),
        "feature_sum": X.sum(axis=0),
        "feature_sumsq": np.einsum("ij,ij->j", X, X),
        "meta": {"rows": len(X)},
    }


def kmeans_combine(params: dict[str, Any], state: State, results: list[State]) -> Step:
    """One Lloyd step. scikit-learn stops when the squared centroid shift is at most ``tol``
    times the mean feature variance (after max_iter steps at the latest); one more round then
    measures the inertia at the final centroids, as its closing E-step does."""
    p = _params("kmeans", params)
    meta = dict(state["meta"])
    centres = np.asarray(state["x"])
    inertia = float(sum(float(r["inertia"]) for r in results))
    if "tol" not in meta:
        rows = sum(int(r["meta"]["rows"]) for r in results)
        mean = np.sum([r["feature_sum"] for r in results], axis=0) / rows
        variance = np.sum([r["feature_sumsq"] for r in results], axis=0) / rows - mean**2
        meta["tol"] = float(np.mean(variance) * float(p["tol"]))
    if meta["final"]:
        final = {**state, "meta": {**meta, "inertia": inertia}}
        return Step(final, True, inertia, 0.0)
    sums = np.sum([r["sums"] for r in results], axis=0)
    counts = np.sum([r["counts"] for r in results], axis=0)
    new = centres.copy()
    filled = counts > 0
    # An empty cluster keeps its centroid (scikit-learn moves it to a far row instead).
    new[filled] = sums[filled] / counts[filled, None]
    shift = float(np.sum((new - centres) ** 2))
    meta["iteration"] = int(meta["iteration"]) + 1
    meta["final"] = shift <= meta["tol"] or meta["iteration"] >= int(p["max_iter"])
    return Step({**state, "x": new, "meta": meta}, False, inertia, shift)


def kmeans_model(params: dict[str, Any], state: State, random_state: int) -> BaseEstimator:
    model: Any = build_estimator("kmeans", params, random_state)
    meta = state["meta"]
    model.cluster_centers_ = np.asarray(state["x"])
    model.n_features_in_ = int(meta["n_features"])
    model.inertia_ = float(meta["inertia"])
    model.n_iter_ = int(meta["iteration"])
    model._n_threads = 1
    model._n_features_out = len(model.cluster_centers_)
    return model


# -- SGD: iterative parameter mixing ------------------------------------------------------------

_CLASSIFIER_LOSSES: dict[str, Any] = {
    "hinge": lambda m: np.maximum(0.0, 1.0 - m),
    "log_loss": lambda m: np.logaddexp(0.0, -m),
    "modified_huber": lambda m: np.where(m >= -1.0, np.maximum(0.0, 1.0 - m) ** 2, -4.0 * m),
    "squared_hinge": lambda m: np.maximum(0.0, 1.0 - m) ** 2,
    "perceptron": lambda m: np.maximum(0.0, -m),
}


def _classifier_loss(name: str, margins: np.ndarray, epsilon: float) -> np.ndarray:
    """The loss of each row and binary problem at margin y * score (y = +1/-1).

    SGDClassifier also takes the four regression losses: they treat the sign as a number to
    fit, and with y = +1/-1 the residual |y - score| is |1 - margin|."""
    if name in _CLASSIFIER_LOSSES:
        loss: np.ndarray = _CLASSIFIER_LOSSES[name](margins)
        return loss
    return _regression_loss(name, 1.0 - margins, epsilon)


def _regression_loss(name: str, residual: np.ndarray, epsilon: float) -> np.ndarray:
    r = np.abs(residual)
    loss: np.ndarray
    if name == "squared_error":
        loss = 0.5 * residual**2
    elif name == "huber":
        loss = np.where(r <= epsilon, 0.5 * residual**2, epsilon * (r - 0.5 * epsilon))
    elif name == "epsilon_insensitive":
        loss = np.maximum(0.0, r - epsilon)
    else:
        loss = np.maximum(0.0, r - epsilon) ** 2  # squared_epsilon_insensitive
    return loss


def _sgd_signs(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """One column of +1/-1 per binary problem (one-vs-rest), as scikit-learn's SGD fits them."""
    signs: np.ndarray
    if len(classes) <= 2:
        signs = np.where(y == classes[-1], 1.0, -1.0)[:, None]
    else:
        signs = np.where(y[:, None] == classes[None, :], 1.0, -1.0)
    return signs


def sgd_start(algorithm: str, n_features: int, classes: np.ndarray | None) -> State:
    outputs = 1 if classes is None or len(classes) <= 2 else len(classes)
    return {
        "coef": np.zeros((outputs, n_features)),
        "intercept": np.zeros(outputs),
        "meta": {
            "epoch": 0,
            "rows": 0,
            "n_features": n_features,
            # The stopping rule's state (sgd_combine): the best objective so far, the rounds
            # since it last improved by tol, the rounds in a row the parameters moved less
            # than tol, and "adaptive"'s current step size (None: eta0).
            "best": None,
            "stale": 0,
            "still": 0,
            "eta0": None,
        },
    }


def _sgd_penalty(p: dict[str, Any], coef: np.ndarray) -> np.ndarray:
    """The penalty of each binary problem's weights, as scikit-learn's SGD adds it."""
    alpha = float(p["alpha"])
    l2 = 0.5 * np.sum(coef**2, axis=1)
    l1 = np.sum(np.abs(coef), axis=1)
    penalty: np.ndarray
    if p["penalty"] == "l2":
        penalty = alpha * l2
    elif p["penalty"] == "l1":
        penalty = alpha * l1
    elif p["penalty"] == "elasticnet":
        ratio = float(p["l1_ratio"])
        penalty = alpha * (ratio * l1 + (1.0 - ratio) * l2)
    else:
        penalty = np.zeros(len(coef))
    return penalty


def sgd_local(
    algorithm: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray | None,
    state: State,
    seed: int,
    shards: int = 1,
) -> State:
    """The shard's summed loss at the mixed parameters, then one epoch of SGD from them.

    ``shards``: the job's shard count. With a step size set by eta0 (every schedule but
    "optimal"), the shard steps ``shards`` times as far as one machine would: the average of
    the shards' epochs then moves as far as one epoch over all rows (while the steps are
    small, each shard's move is its rows' share of that epoch's), and, unlike adding the
    shards' moves, it cannot overshoot when a shard's epoch gets near its own optimum."""
    p = _params(algorithm, params)
    coef, intercept = np.asarray(state["coef"]), np.asarray(state["intercept"])
    scores = X @ coef.T + intercept
    # One loss per binary problem (one-vs-rest), summed over the shard's rows (vectorised:
    # the same loss functions scikit-learn's SGD minimises).
    if classes is not None:
        margins = _sgd_signs(y, classes) * scores
        loss = np.sum(_classifier_loss(p["loss"], margins, float(p["epsilon"])), axis=0)
    else:
        residual = y - scores[:, 0]
        loss = np.array([np.sum(_regression_loss(p["loss"], residual, float(p["epsilon"])))])
    meta = state["meta"]
    model: Any = build_estimator(algorithm, params, seed)
    if p["learning_rate"] != "optimal":
        eta0 = float(meta.get("eta0") or p["eta0"])
        model.set_params(eta0=eta0 * shards)
    # Warm: the mixed parameters, and the step count one machine would be at after as many
    # epochs over all rows, so the learning rate decays as it would there.
    model.coef_ = coef[0].copy() if classes is None else coef.copy()
    model.intercept_ = intercept.copy()
    if classes is not None:
        model.classes_ = np.asarray(classes)
    model.n_features_in_ = X.shape[1]
    model.t_ = 1.0 + float(meta["epoch"]) * float(meta["rows"] or len(X) * shards)
    model.partial_fit(X, y)
    new_coef = np.atleast_2d(model.coef_)
    return {
        "coef": new_coef * len(X),
        "intercept": np.asarray(model.intercept_, dtype=np.float64) * len(X),
        "loss": loss,
        "meta": {"rows": len(X)},
    }


def sgd_combine(algorithm: str, params: dict[str, Any], state: State, results: list[State]) -> Step:
    """Average the shards' epochs, weighted by rows (iterative parameter mixing), and decide
    whether to stop. After ``max_iter`` rounds, or with ``tol`` set, after either of:

    - scikit-learn's rule on the mixed model's objective: the objective (the mean loss over
      all rows plus the penalty, summed over the binary problems, at the parameters the round
      started from, which the shards evaluate before their epoch) has not fallen below its
      best so far minus ``tol`` for ``n_iter_no_change`` rounds in a row ("adaptive" divides
      its step size by 5 instead, while it is above 1e-6, as scikit-learn does);
    - the parameters stop moving: the mixed parameters (coefficients and intercepts) moved by
      at most ``tol`` relative to their size, ||Δθ||₂ ≤ tol · max(1, ||θ||₂), for
      ``n_iter_no_change`` rounds in a row (Spark MLlib's convergence test for its gradient
      descent, with scikit-learn's patience).

    Everything the rule keeps is in the round record, so any worker combines."""
    p = _params(algorithm, params)
    meta = dict(state["meta"])
    rows = sum(int(r["meta"]["rows"]) for r in results)
    old = np.asarray(state["coef"])
    old_intercept = np.asarray(state["intercept"])
    coef = np.sum([r["coef"] for r in results], axis=0) / rows
    intercept = np.sum([r["intercept"] for r in results], axis=0) / rows
    objectives = np.sum([r["loss"] for r in results], axis=0) / rows + _sgd_penalty(p, old)
    objective = float(np.sum(objectives))
    new = np.concatenate([coef.ravel(), intercept.ravel()])
    moved = new - np.concatenate([old.ravel(), old_intercept.ravel()])
    change = float(np.linalg.norm(moved) / max(1.0, float(np.linalg.norm(new))))
    meta["rows"] = rows
    meta["epoch"] = int(meta["epoch"]) + 1
    done = meta["epoch"] >= int(p["max_iter"])
    tol = p["tol"]
    patience = int(p["n_iter_no_change"])
    if tol is not None:
        tol = float(tol)
        if meta["epoch"] > 1:
            # Round 0's objective is at the zero start, which no epoch is measured against.
            best = math.inf if meta["best"] is None else float(meta["best"])
            meta["stale"] = int(meta["stale"]) + 1 if objective > best - tol else 0
            meta["best"] = min(best, objective)
        meta["still"] = int(meta["still"]) + 1 if change <= tol else 0
        if meta["stale"] >= patience:
            eta0 = float(meta["eta0"] or p["eta0"])
            if p["learning_rate"] == "adaptive" and eta0 > 1e-6:
                meta["eta0"], meta["stale"] = eta0 / 5.0, 0
            else:
                done = True
        done = done or meta["still"] >= patience
    nxt = {**state, "coef": coef, "intercept": intercept, "meta": meta}
    return Step(nxt, done, objective, change)


def sgd_model(
    algorithm: str,
    params: dict[str, Any],
    state: State,
    classes: np.ndarray | None,
    random_state: int,
) -> BaseEstimator:
    model: Any = build_estimator(algorithm, params, random_state)
    coef = np.asarray(state["coef"])
    model.coef_ = coef[0].copy() if classes is None else coef.copy()
    model.intercept_ = np.asarray(state["intercept"]).copy()
    if classes is not None:
        model.classes_ = np.asarray(classes)
    model.n_features_in_ = int(state["meta"]["n_features"])
    model.n_iter_ = int(state["meta"]["epoch"])
    model.t_ = 1.0 + float(state["meta"]["epoch"]) * float(state["meta"]["rows"])
    return model


# -- the dispatch the child and the combiner use ------------------------------------------------


def start(
    algorithm: str,
    params: dict[str, Any],
    X: np.ndarray,
    classes: np.ndarray | None,
    job_seed: int,
) -> State:
    """Round 0's state, computed by shard 0's child."""
    if algorithm == "logistic_regression":
        assert classes is not None
        return logistic_start(params, X.shape[1], classes)
    if algorithm == "kmeans":
        return kmeans_start(params, X, job_seed)
    if algorithm in SGD:
        return sgd_start(algorithm, X.shape[1], classes)
    raise ValueError(f"{algorithm} does not train in rounds")


def local(
    algorithm: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray | None,
    state: State,
    seed: int = 0,
    shards: int = 1,
) -> State:
    """``seed``: the shard's seed for this round (SGD's shuffling); ``shards``: the job's."""
    if algorithm == "logistic_regression":
        assert classes is not None
        return logistic_local(params, X, y, classes, np.asarray(state["x"]))
    if algorithm == "kmeans":
        return kmeans_local(X, np.asarray(state["x"]))
    if algorithm in SGD:
        return sgd_local(algorithm, params, X, y, classes, state, seed, shards)
    raise ValueError(f"{algorithm} does not train in rounds")


def combine(
    algorithm: str,
    params: dict[str, Any],
    state: State,
    results: list[State],
    memory: Memory | None = None,
) -> Step:
    """``memory``: what this process kept from the rounds it combined before (see Memory)."""
    if algorithm == "logistic_regression":
        return logistic_combine(params, state, results, memory)
    if algorithm == "kmeans":
        return kmeans_combine(params, state, results)
    if algorithm in SGD:
        return sgd_combine(algorithm, params, state, results)
    raise ValueError(f"{algorithm} does not train in rounds")


def model(
    algorithm: str,
    params: dict[str, Any],
    state: State,
    classes: np.ndarray | None,
    random_state: int,
) -> BaseEstimator:
    """The fitted estimator the final state stands for."""
    if algorithm == "logistic_regression":
        assert classes is not None
        return logistic_model(params, state, classes, random_state)
    if algorithm == "kmeans":
        return kmeans_model(params, state, random_state)
    if algorithm in SGD:
        return sgd_model(algorithm, params, state, classes, random_state)
    raise ValueError(f"{algorithm} does not train in rounds")


def round_seed(shard: int, number: int) -> int:
    """A shard's seed for round ``number``: every epoch shuffles its rows differently."""
    return shard_seed(shard, number)


def fit_in_rounds(
    algorithm: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray | None,
    shards: int,
    *,
    job_seed: int,
    memory: bool = True,
) -> tuple[BaseEstimator, int]:
    """Every round of a job here, one shard after another, through pack/unpack as the bytes
    travel between processes: the model and the number of rounds. For tools, tests and
    benchmarks (shards are the job's random partition); workers run zootrain/rounds.py.
    ``memory``: combine as one training child does, keeping a live optimizer between rounds
    (False: replay every round, as a combiner without one does)."""
    kept = Memory() if memory else None
    try:
        return _fit_in_rounds(algorithm, params, X, y, classes, shards, job_seed, kept)
    finally:
        if kept is not None:
            kept.close()


def _fit_in_rounds(
    algorithm: str,
    params: dict[str, Any],
    X: np.ndarray,
    y: np.ndarray,
    classes: np.ndarray | None,
    shards: int,
    job_seed: int,
    memory: Memory | None,
) -> tuple[BaseEstimator, int]:
    from zootrain.ml.partition import shard_rows

    parts = [shard_rows(len(X), shards, i, "random", job_seed, y=y) for i in range(shards)]
    seeds = [shard_seed(job_seed, i) for i in range(shards)]
    state = unpack(pack(start(algorithm, params, X[parts[0]], classes, job_seed)))
    number = 0
    while True:
        results = [
            unpack(
                pack(
                    local(
                        algorithm,
                        params,
                        X[rows],
                        y[rows],
                        classes,
                        state,
                        round_seed(seeds[i], number),
                        shards,
                    )
                )
            )
            for i, rows in enumerate(parts)
        ]
        step = combine(algorithm, params, state, results, memory)
        state = unpack(pack(step.state))
        number += 1
        if step.done:
            return model(algorithm, params, state, classes, job_seed), number
