"""One peer system (Dask or Ray, or scikit-learn's own joblib) kept warm in its own process,
timing what bench.peers asks of it: ``python -m bench.peer_child {dask,ray,sklearn}``.

The parent writes one JSON command a line on stdin and reads one JSON answer a line on stdout:
``{"what": "forest", "rows": R, "trees": T}``, ``{"what": "search", "rows": R, "trees": T}``,
``{"what": "tiny", "tasks": N}``, ``{"what": "quit"}``. Each answer is ``{"seconds": s}`` (or
``{"error": ...}``). The data is generated here by the same code as the parent's (zootrain's own
load and split of the job's synthetic dataset), so nothing large crosses the pipe, and the
cluster is started once, before the first command, and is warm for every timed one: as
zootrain's workers are warm for its jobs.

Peers, as a user choosing them would run them on 2 cores:

- dask: ``distributed.LocalCluster(n_workers=2, threads_per_worker=1)`` (processes), and
  scikit-learn's own fit under ``joblib.parallel_config("dask")``;
- ray: ``ray.init(num_cpus=2)`` and ``joblib.parallel_config("ray")`` (``ray.util.joblib``);
- sklearn: no cluster, ``n_jobs=2`` (loky processes for the search, threads for the forest's
  trees, as scikit-learn chooses).

Each system's per-task cost is N no-op tasks submitted at once and gathered: wall time x 2
slots / N, the slot time one task occupies.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np

from testkit.bench_specs import E2E_SEED as SEED
from testkit.bench_specs import SEARCH_FOLDS as FOLDS
from testkit.bench_specs import SEARCH_GRID

SLOTS = 2


def noop(index: int) -> int:
    return index


@cache
def training_rows(rows: int) -> tuple[np.ndarray, np.ndarray]:
    from bench.e2e import training_rows as rows_of

    return rows_of(rows)


def forest_fit(rows: int, trees: int, backend: str | None) -> float:
    from sklearn.ensemble import RandomForestClassifier

    X, y = training_rows(rows)
    forest = RandomForestClassifier(n_estimators=trees, n_jobs=SLOTS, random_state=SEED)
    with _backend(backend):
        started = time.perf_counter()
        forest.fit(X, y)
        return time.perf_counter() - started


def search_fit(rows: int, trees: int, backend: str | None) -> float:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    X, y = training_rows(rows)
    search = GridSearchCV(
        RandomForestClassifier(n_estimators=trees, random_state=SEED, n_jobs=1),
        {key: list(values) for key, values in SEARCH_GRID.items()},
        cv=StratifiedKFold(FOLDS, shuffle=True, random_state=SEED),
        n_jobs=SLOTS,
        refit=True,  # zootrain's merge refits the best candidate on every training row too
        error_score="raise",
    )
    with _backend(backend):
        started = time.perf_counter()
        search.fit(X, y)
        return time.perf_counter() - started


@contextlib.contextmanager
def _backend(name: str | None) -> Iterator[None]:
    if name is None:
        yield
        return
    import joblib

    with joblib.parallel_config(backend=name, n_jobs=SLOTS):
        yield


class Peer:
    backend: str | None = None

    def forest(self, rows: int, trees: int) -> float:
        return forest_fit(rows, trees, self.backend)

    def search(self, rows: int, trees: int) -> float:
        return search_fit(rows, trees, self.backend)

    def tiny(self, tasks: int) -> float:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Sklearn(Peer):
    def tiny(self, tasks: int) -> float:
        import joblib

        started = time.perf_counter()
        joblib.Parallel(n_jobs=SLOTS)(joblib.delayed(noop)(i) for i in range(tasks))
        return time.perf_counter() - started


class Dask(Peer):
    backend = "dask"

    def __init__(self) -> None:
        from dask.distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=SLOTS, threads_per_worker=1, processes=True, dashboard_address=None
        )
        self.client = Client(self.cluster)

    def tiny(self, tasks: int) -> float:
        started = time.perf_counter()
        # pure=False: every task runs, none is deduplicated by its key.
        self.client.gather(self.client.map(noop, range(tasks), pure=False))
        return time.perf_counter() - started

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


class Ray(Peer):
    backend = "ray"

    def __init__(self) -> None:
        import ray
        from ray.util.joblib import register_ray

        ray.init(
            num_cpus=SLOTS,
            include_dashboard=False,
            object_store_memory=512 * 1024 * 1024,
            log_to_driver=False,
        )
        register_ray()
        self.remote_noop = ray.remote(noop)

    def tiny(self, tasks: int) -> float:
        import ray

        started = time.perf_counter()
        ray.get([self.remote_noop.remote(i) for i in range(tasks)])
        return time.perf_counter() - started

    def close(self) -> None:
        import ray

        ray.shutdown()


PEERS: dict[str, Callable[[], Peer]] = {"sklearn": Sklearn, "dask": Dask, "ray": Ray}


def answer(peer: Peer, command: dict[str, Any]) -> dict[str, Any]:
    what = command["what"]
    if what == "forest":
        return {"seconds": peer.forest(command["rows"], command["trees"])}
    if what == "search":
        return {"seconds": peer.search(command["rows"], command["trees"])}
    if what == "tiny":
        return {"seconds": peer.tiny(command["tasks"])}
    raise ValueError(f"unknown command {what!r}")


def main(argv: list[str] | None = None) -> int:
    name = (argv if argv is not None else sys.argv[1:])[0]
    out = sys.stdout
    sys.stdout = sys.stderr  # the peers' own chatter must not reach the answers' pipe
    peer = PEERS[name]()
    print(json.dumps({"ready": name}), file=out, flush=True)
    try:
        for line in sys.stdin:
            command = json.loads(line)
            if command["what"] == "quit":
                break
            try:
                reply = answer(peer, command)
            except Exception as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(reply), file=out, flush=True)
    finally:
        peer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
