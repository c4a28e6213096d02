"""What runs inside a shard's training child when its job trains in rounds.

The child loads its shard's rows once (as a one-shot shard does, workers/train_child.py) and then
answers the worker's requests, round after round, until the worker kills it:

    start    round 0's state (shard 0 only: k-means seeds from its rows)
    local    this shard's result at a round's parameters
    combine  a complete round's results into the next round's state (and, when done, the
             final model, written to the artifact store); the child keeps what helps it combine
             the next round it gets (a live L-BFGS: round_steps.Memory), checked against the
             round's record before use
    finish   the final model's metrics on this shard's held-out rows

Everything crosses the pipe as bytes (zootrain.ml.round_steps.pack): the worker's process has no
numpy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from workers.train_child import _plan, _shard_rows, _source, _spec
from zootrain.artifacts import ArtifactStore
from zootrain.ml import modelfile, round_steps
from zootrain.ml.scoring import evaluate
from zootrain.ml.training import shard_seed


def shard_session(payload: dict[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    spec = _spec(payload)
    index: int = payload["index"]
    store = ArtifactStore(payload["artifacts"])
    source, task = _source(spec, payload, store)
    plan = _plan(spec, source, task)
    split = _shard_rows(spec, index, source, plan)
    del source, plan
    if len(split.X_train) == 0:
        raise ValueError(f"shard {index} has no training rows; use fewer shards")
    clusters = spec.algorithm == "kmeans"
    classes = None if clusters else split.classes
    memory = round_steps.Memory()

    def handle(message: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        op = message["op"]
        reply: dict[str, Any]
        if op == "start":
            state = round_steps.start(
                spec.algorithm, spec.params, split.X_train, classes, spec.random_state
            )
            reply = {"state": round_steps.pack(state)}
        elif op == "local":
            state = round_steps.unpack(message["state"])
            seed = round_steps.round_seed(shard_seed(spec.random_state, index), message["round"])
            result = round_steps.local(
                spec.algorithm,
                spec.params,
                split.X_train,
                split.y_train,
                classes,
                state,
                seed,
                spec.shards,
            )
            reply = {"result": round_steps.pack(result)}
        elif op == "combine":
            step = round_steps.combine(
                spec.algorithm,
                spec.params,
                round_steps.unpack(message["state"]),
                [round_steps.unpack(r) for r in message["results"]],
                memory,
            )
            reply = {
                "state": round_steps.pack(step.state),
                "done": step.done,
                "objective": step.objective,
                "change": step.change,
            }
            if step.done:
                model = round_steps.model(
                    spec.algorithm, spec.params, step.state, classes, spec.random_state
                )
                artifact, sha256 = store.put(modelfile.dumps(model))
                reply["model"] = {"artifact": artifact, "sha256": sha256}
        elif op == "finish":
            model = modelfile.loads(store.get(message["artifact"], message["sha256"]))
            metrics = evaluate(model, split.X_test, split.y_test, task=task, classes=split.classes)
            reply = {"metrics": metrics, "rows": len(split.X_train)}
        else:
            raise ValueError(f"unknown request {op!r}")
        reply["seconds"] = time.perf_counter() - started
        return reply

    return handle
