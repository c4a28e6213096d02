"""Predictions through the API against the same model's predict in this process, same run.

Two published forests, a small one (20 trees, depth 8) and one whose file is about 100 MB,
are planted straight into the registry (file in the store, version record in ZooKeeper: no
training job needed). Each is asked for one row and for 1,000 rows by 1 and by 64 keep-alive
clients (bench.http_load.RawHTTP, one request in flight each) on job services side by side
on the same ZooKeeper and store: micro-batching on (the default) and off
(ZOOTRAIN_PREDICT_BATCH_ROWS=0, one predict call a request: the path before batching), and
for one row a request a third with batching on and the watched serving records off
(ZOOTRAIN_SERVING_CACHE_ENTRIES=0: a ZooKeeper read of the model's and version's records on
every request, the path before zootrain.watched); and, for one row a request, the batched
service asked with a JSON type only FastAPI's generic handler takes (the path before
app.predict_route's direct handler). The levels are interleaved between the
services and repeated ``runs`` times; every figure is the median of the runs.

Baselines: the same model's ``predict`` of the same rows in this process, one call at a time
(its p50 for latency, rows / p50 for rows/s), and for the cold load, skops' own ``load`` of the
same file as the first load of a fresh process, as a restarted prediction process loads it
(the same load in this long-lived process is printed beside it: its cost swings with the
memory this process freed before it, from about half to nearly three times a fresh
process's). The cold load is the first one-row prediction of the big forest by a freshly
started job service (warmed by one prediction of the small forest), less the median of the
warm ones that follow it on that service; five such services (two in the quick form), each
paired with a fresh process's skops load just before or after it, and the goal is judged on
the median of the pairs' ratios.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import skops.io as sio
from kazoo.client import KazooClient
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

from bench.figures import Figure, percentile
from bench.harness import AUTH, BenchStack, Context
from bench.http_load import RawHTTP
from bench.profile import Profiler
from zootrain.artifacts import ArtifactStore
from zootrain.ml import forest_walk, modelfile
from zootrain.paths import Paths
from zootrain.records import VersionRecord, utcnow

FEATURES = 20
ROWS = (1, 1000)
CLIENTS = (1, 64)
GOAL_BATCHED = 5.0  # 64 one-row clients: rows/s ≥ 5 x the unbatched path
GOAL_OVERHEAD = 0.001  # one row, one client: p50 ≤ in-process p50 + 1 ms
GOAL_COLD = 1.2  # the big forest's cold load ≤ 1.2 x skops' own load
COLD_LOADS = 5  # fresh job services (each paired with a skops load); 2 in the quick form
COLD_LOADS_QUICK = 2
WARM_AFTER_COLD = 9  # warm predictions after a cold one, on the same service


@dataclass
class Model:
    name: str
    model: Any
    data: bytes


@dataclass
class Level:
    latencies: list[float]
    rows: int
    elapsed: float
    errors: int

    @property
    def rate(self) -> float:
        return len(self.latencies) * self.rows / self.elapsed


def forests(quick: bool) -> list[Model]:
    X, y = make_classification(
        n_samples=2_000, n_features=FEATURES, n_informative=10, random_state=0
    )
    small = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0).fit(X, y)
    # Noisy labels grow deep trees: about 100 MB of nodes (10 MB in the quick form).
    n = 12_000 if quick else 40_000
    X, y = make_classification(
        n_samples=n, n_features=FEATURES, n_informative=10, flip_y=0.3, random_state=1
    )
    big = RandomForestClassifier(n_estimators=40 if quick else 120, random_state=0, n_jobs=2)
    big.fit(X, y)
    big.n_jobs = 1  # predict one call at a time, as the service's children do
    return [
        Model("small-forest", small, modelfile.dumps(small)),
        Model("big-forest", big, modelfile.dumps(big)),
    ]


def plant(settings: Mapping[str, str], model: Model) -> None:
    """Publish ``model`` as version 1 of its name: its file in the store, its record in ZK
    (``settings``: a stack's ZOOTRAIN_* environment)."""
    uri, sha256 = ArtifactStore(settings["ZOOTRAIN_ARTIFACTS"]).put(model.data)
    record = VersionRecord(
        model=model.name,
        job_id="bench-predict",
        algorithm="random_forest_classifier",
        task="classification",
        shards=1,
        artifact=uri,
        sha256=sha256,
        size=len(model.data),
        n_features=FEATURES,
        classes=[0, 1],
        metrics={},
        shard_metrics=[],
        train_rows=0,
        test_rows=0,
        created_at=utcnow(),
    )
    paths = Paths(settings["ZOOTRAIN_ZK_ROOT"])
    client = KazooClient(hosts=settings["ZOOTRAIN_ZK_HOSTS"])
    client.start(30)
    try:
        client.ensure_path(paths.model(model.name))
        client.create(paths.version(model.name, 1), record.dump())
    finally:
        client.stop()
        client.close()


def in_process(model: Any, X: np.ndarray, budget: float, walk: bool = False) -> float:
    """p50 of ``model.predict(X)`` here, one call at a time, over about ``budget`` seconds;
    ``walk``: of the call the service makes instead, the forest's trees called in a loop
    (zootrain.ml.forest_walk: the same bits, without joblib's dispatch per tree)."""
    predict = (lambda rows: forest_walk.predict(model, rows)) if walk else model.predict
    predict(X)
    times: list[float] = []
    stop = time.perf_counter() + budget
    while len(times) < 5 or (time.perf_counter() < stop and len(times) < 2_000):
        started = time.perf_counter()
        predict(X)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def skops_load(path: Path) -> float:
    """skops' own load of the file (the types it needs trusted up front), in seconds."""
    trusted = sio.get_untrusted_types(file=path)
    started = time.perf_counter()
    sio.load(path, trusted=trusted)
    return time.perf_counter() - started


FRESH = """
import sys, time
import sklearn.ensemble, skops.io as sio
path = sys.argv[1]
trusted = sio.get_untrusted_types(file=path)
wall, cpu = time.perf_counter(), time.process_time()
sio.load(path, trusted=trusted)
print(time.perf_counter() - wall, time.process_time() - cpu)
"""


def skops_fresh(path: Path) -> tuple[float, float]:
    """skops' own load of ``path`` as the first model a fresh process loads, as a prediction
    process loads it after a restart (the imports, and skops' listing of the file's types, done
    before the clock starts): wall and CPU seconds. The load's own cost depends on the memory
    its process has freed before: in the benchmark's long-lived process the same load took
    from 0.55 to 2.8 times a fresh process's (docs/performance.md), so that is no baseline
    for a load after a restart."""
    out = subprocess.run(
        [sys.executable, "-c", FRESH, str(path)], capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1])


# The predict route's direct handler (app.predict_route) takes application/json; this JSON type
# only FastAPI's generic handler takes: the same service, the path before the direct handler.
GENERIC_TYPE = "application/vnd.api+json"


async def load(
    url: str,
    path: str,
    body: bytes,
    rows: int,
    clients: int,
    duration: float,
    content_type: str = "application/json",
) -> Level:
    """``clients`` keep-alive connections POSTing ``body`` to ``path`` for ``duration`` s."""
    connections = [RawHTTP(url) for _ in range(clients)]
    request = connections[0].request(path, body, {"content-type": content_type, **AUTH})
    latencies: list[float] = []
    errors = 0

    async def send(connection: RawHTTP) -> int:
        try:
            status, _ = await connection.send(request)
        except (asyncio.IncompleteReadError, ConnectionError):
            # uvicorn closes a keep-alive connection idle for 5 s (a client that waited for
            # the others' warm-up): connect again and send it again.
            await connection.close()
            await connection.connect()
            status, _ = await connection.send(request)
        return status

    try:
        await asyncio.gather(*(c.connect() for c in connections))
        await asyncio.gather(*(send(c) for c in connections))  # warm
        begin = time.perf_counter()
        stop = begin + duration

        async def one(connection: RawHTTP) -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                if await send(connection) == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        await asyncio.gather(*(one(c) for c in connections))
        elapsed = time.perf_counter() - begin
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return Level(latencies, rows, elapsed, errors)


async def predict_spent(url: str) -> tuple[float, float]:
    """The job service's zootrain_predict_seconds_total and _calls_total: the time its
    prediction processes spent in the models' own predict calls."""
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30) as client:
        text = (await client.get("/metrics")).text
    found = {"seconds": 0.0, "calls": 0.0}
    for line in text.splitlines():
        for what in found:
            if line.startswith(f"zootrain_predict_{what}_total "):
                found[what] = float(line.split()[1])
    return found["seconds"], found["calls"]


def body_for(rows: int) -> tuple[np.ndarray, bytes]:
    X = np.random.default_rng(rows).normal(size=(rows, FEATURES)).round(4)
    return X, json.dumps({"instances": X.tolist(), "version": 1}).encode()


async def timed_prediction(connection: RawHTTP, name: str, body: bytes) -> float:
    request = connection.request(
        f"/v1/models/{name}/predict", body, {"content-type": "application/json", **AUTH}
    )
    started = time.perf_counter()
    status, answer = await connection.send(request)
    if status != 200:
        raise RuntimeError(f"predict answered {status}: {answer[:300]!r}")
    return time.perf_counter() - started


async def cold_prediction(
    stack: BenchStack, name: str, other: str, body: bytes
) -> tuple[float, float]:
    """A fresh job service's first prediction of ``name``, and the median of the warm ones
    that follow it on the same service. The service first predicts ``other`` (a small model):
    its own first-request costs (FastAPI building its routes, the first ZooKeeper reads) are
    not the model's load."""
    process = stack.start_api_server(1)
    try:
        connection = await RawHTTP(stack.url).connect()
        try:
            await timed_prediction(connection, other, body)
            first = await timed_prediction(connection, name, body)
            warm = [await timed_prediction(connection, name, body) for _ in range(WARM_AFTER_COLD)]
        finally:
            await connection.close()
    finally:
        process.stop()
    return first, med(warm)


def med(values: list[float]) -> float:
    return statistics.median(values)


async def run(ctx: Context) -> list[Figure]:
    duration = float(ctx.options.get("duration") or (1.0 if ctx.quick else 3.0))
    runs = 1 if ctx.quick else 3
    command = ctx.command("predict")
    loop = asyncio.get_running_loop()
    ctx.log("predict: training the forests")
    models = await loop.run_in_executor(None, forests, ctx.quick)
    for m in models:
        ctx.log(f"predict: {m.name} file {len(m.data) / 1e6:.1f} MB")
    bodies = {rows: body_for(rows) for rows in ROWS}
    # (config, model, rows, clients) -> per-run (p50, p99, rows/s)
    found: dict[tuple[str, str, int, int], list[tuple[float, float, float]]] = {}
    # model -> per-run mean seconds of the model's predict in the prediction process, at one
    # row and one client (batched service): the latency's split between model and service.
    inside: dict[str, list[float]] = {}
    baseline: dict[tuple[str, int], list[float]] = {}
    walked: dict[tuple[str, int], list[float]] = {}  # the service's call, here (not judged)
    cold: list[float] = []
    skops: list[float] = []  # skops' load in this process (printed, not judged)
    fresh: list[float] = []  # skops' load in a fresh process: the cold load's baseline
    ours: list[float] = []
    configs = {
        "batched": {},
        "unbatched": {"ZOOTRAIN_PREDICT_BATCH_ROWS": "0"},
        # Batched, but reading the model's and the version's records from ZooKeeper on every
        # request: the path before zootrain.watched, for the same-run comparison.
        "uncached": {"ZOOTRAIN_SERVING_CACHE_ENTRIES": "0"},
    }
    with ctx.zookeeper("predict") as zk, ctx.stack("predict", zk) as stack:
        for m in models:
            plant(stack.settings, m)
        urls: dict[str, str] = {}
        pids: dict[str, int] = {}
        for config, extra in configs.items():
            stack.settings.update(extra)  # each service reads its settings when it starts
            pids[config] = stack.start_api_server(1).popen.pid
            urls[config] = stack.url
            for key in extra:
                del stack.settings[key]
        urls["generic"] = urls["batched"]  # the batched service, FastAPI's generic handler
        pids["generic"] = pids["batched"]
        for run_index in range(runs):
            for m in models:
                for rows in ROWS:
                    X, body = bodies[rows]
                    budget = min(duration, 2.0)
                    baseline.setdefault((m.name, rows), []).append(
                        await loop.run_in_executor(None, in_process, m.model, X, budget)
                    )
                    walked.setdefault((m.name, rows), []).append(
                        await loop.run_in_executor(None, in_process, m.model, X, budget, True)
                    )
                    for clients in CLIENTS:
                        # Alternated run by run: neither service always goes first.
                        order = list(urls.items())
                        for config, url in order[:: -1 if run_index % 2 else 1]:
                            if config != "batched" and rows != 1:
                                continue  # batching and the record cache matter for few rows
                            profiler = None
                            profiled = (run_index, rows, clients, config) == (0, 1, 64, "batched")
                            if ctx.profile and profiled and Profiler.available():
                                profiler = Profiler(
                                    f"job service, {m.name} 1 row 64 clients (batched)",
                                    pids[config],
                                    ctx.directory("profiles"),
                                ).start()
                            split = (config, rows, clients) == ("batched", 1, 1)
                            spent = await predict_spent(url) if split else (0.0, 0.0)
                            level = await load(
                                url,
                                f"/v1/models/{m.name}/predict",
                                body,
                                rows,
                                clients,
                                duration,
                                GENERIC_TYPE if config == "generic" else "application/json",
                            )
                            if split:
                                seconds, calls = await predict_spent(url)
                                # The warm-up request is counted too: one call of the same.
                                inside.setdefault(m.name, []).append(
                                    (seconds - spent[0]) / max(1.0, calls - spent[1])
                                )
                            if profiler is not None:
                                profiler.stop()
                                ctx.profiles.append(profiler.summary())
                            p50 = percentile(level.latencies, 50)
                            p99 = percentile(level.latencies, 99)
                            ctx.log(
                                f"predict run {run_index + 1}: {m.name} {rows} rows "
                                f"{clients} clients {config}: p50 {p50 * 1000:.2f} ms p99 "
                                f"{p99 * 1000:.2f} ms {level.rate:,.0f} rows/s "
                                f"({level.errors} errors)"
                            )
                            found.setdefault((config, m.name, rows, clients), []).append(
                                (p50, p99, level.rate)
                            )
        # Cold load: a freshly started job service's first prediction of the big forest, in
        # pairs with skops' own load of the same file in a fresh process, made just before or
        # after it (the order alternates), so that the machine's load drifting between the two
        # moves both.
        big, small = models[-1], models[0]
        path = stack.directory / f"{big.name}.skops"
        path.write_bytes(big.data)
        _, one_row = bodies[1]
        for index in range(COLD_LOADS_QUICK if ctx.quick else COLD_LOADS):
            if index % 2:
                fresh.append((await loop.run_in_executor(None, skops_fresh, path))[0])
            first, warm = await cold_prediction(stack, big.name, small.name, one_row)
            cold.append(first - warm)
            if not index % 2:
                fresh.append((await loop.run_in_executor(None, skops_fresh, path))[0])
            skops.append(await loop.run_in_executor(None, skops_load, path))
            begun = time.perf_counter()
            await loop.run_in_executor(None, modelfile.load, path)
            ours.append(time.perf_counter() - begun)
            ctx.log(
                f"predict: cold load {cold[-1]:.3f} s (first prediction {first:.3f} s, then "
                f"{warm * 1000:.1f} ms warm); skops.io.load in a fresh process {fresh[-1]:.3f} s "
                f"({cold[-1] / fresh[-1]:.2f}x), in this process {skops[-1]:.3f} s; "
                f"modelfile.load {ours[-1]:.3f} s"
            )
    return figures(found, baseline, cold, fresh, ours, models, command, runs, inside, skops, walked)


def figures(
    found: dict[tuple[str, str, int, int], list[tuple[float, float, float]]],
    baseline: dict[tuple[str, int], list[float]],
    cold: list[float],
    skops: list[float],
    ours: list[float],
    models: list[Model],
    command: str,
    runs: int,
    inside: dict[str, list[float]] | None = None,
    in_bench: list[float] | None = None,
    walked: dict[tuple[str, int], list[float]] | None = None,
) -> list[Figure]:
    """``skops``: skops' own load of the big forest in a fresh process, each paired with one of
    ``cold``; ``in_bench``: the same load in this process (printed only); ``walked``: the
    service's own call (the forest's trees in a loop) in this process, beside the baseline
    (``model.predict``, what a user's own code calls), printed, not judged."""
    out: list[Figure] = []
    note = f"median of {runs} runs"

    def stat(key: tuple[str, str, int, int], i: int) -> float:
        return med([r[i] for r in found[key]])

    for m in models:
        size = f"{len(m.data) / 1e6:.0f} MB"
        for rows in ROWS:
            here = med(baseline[(m.name, rows)])
            for clients in CLIENTS:
                key = ("batched", m.name, rows, clients)
                what = f"predict {m.name} ({size}), {rows} rows, {clients} clients"
                p50, p99, rate = stat(key, 0), stat(key, 1), stat(key, 2)
                overhead_goal = rows == 1 and clients == 1
                # Each run's p50 less that run's in-process p50 (measured just before it),
                # then the median: the machine's load moves both figures of a run together.
                overheads = [
                    r[0] - b for r, b in zip(found[key], baseline[(m.name, rows)], strict=True)
                ]
                overhead = med(overheads)
                walk = med(walked[(m.name, rows)]) if walked else None
                beside = (
                    f"; the service's call in this process (trees in a loop) "
                    f"{walk * 1000:.2f} ms, p50 over it {(p50 - walk) * 1000:.2f} ms"
                    if walk is not None
                    else ""
                )
                out.append(
                    Figure(
                        f"{what}: p50",
                        p50,
                        "s",
                        baseline=here,
                        baseline_name="predict in this process, p50",
                        goal=f"≤ in-process + {GOAL_OVERHEAD * 1000:.0f} ms"
                        if overhead_goal
                        else "",
                        met=(overhead <= GOAL_OVERHEAD) if overhead_goal else None,
                        command=command,
                        note=f"{note}; overhead {overhead * 1000:.2f} ms (per run "
                        + ", ".join(f"{o * 1000:.2f}" for o in overheads)
                        + ")"
                        + beside,
                    )
                )
                if overhead_goal and inside and m.name in inside:
                    # The overhead split: the model's own predict in the prediction process
                    # (the same call as the baseline's, but one a request, its caches cold
                    # from the request's other work) and the rest (HTTP, the hop to it).
                    model_time = med(inside[m.name])
                    same = walk if walk is not None else here  # the same call, in this process
                    out.append(
                        Figure(
                            f"{what}: the model's predict in the prediction process (mean)",
                            model_time,
                            "s",
                            baseline=same,
                            baseline_name="the same call in this process, p50",
                            command=command,
                            note=f"{note}; over the same call here, "
                            f"{(model_time - same) * 1000:.2f} ms in the model's own predict, "
                            f"{(p50 - model_time) * 1000:.2f} ms the service's (HTTP, the hop)",
                        )
                    )
                out.append(Figure(f"{what}: p99", p99, "s", command=command, note=note))
                out.append(
                    Figure(
                        f"{what}: rows/s",
                        rate,
                        "rows/s",
                        baseline=rows / here,
                        baseline_name="in this process, one call at a time",
                        command=command,
                        note=note,
                    )
                )
                unbatched = ("unbatched", m.name, rows, clients)
                if unbatched in found:
                    u50, u99, urate = stat(unbatched, 0), stat(unbatched, 1), stat(unbatched, 2)
                    goal = clients == 64
                    out.append(
                        Figure(
                            f"{what}: rows/s batched / unbatched",
                            rate,
                            "rows/s",
                            baseline=urate,
                            baseline_name="ZOOTRAIN_PREDICT_BATCH_ROWS=0",
                            goal=f"≥ {GOAL_BATCHED:.0f}x unbatched" if goal else "",
                            met=(rate >= GOAL_BATCHED * urate) if goal else None,
                            command=command,
                            note=f"{note}; unbatched p50 {u50 * 1000:.2f} ms p99 "
                            f"{u99 * 1000:.2f} ms",
                        )
                    )
                    out.append(
                        Figure(
                            f"{what}: p99 batched / unbatched",
                            p99,
                            "s",
                            baseline=u99,
                            baseline_name="ZOOTRAIN_PREDICT_BATCH_ROWS=0",
                            goal="≤ unbatched" if goal else "",
                            met=(p99 <= u99) if goal else None,
                            command=command,
                            note=note,
                        )
                    )
                generic = ("generic", m.name, rows, clients)
                if generic in found:
                    g50, g99, grate = stat(generic, 0), stat(generic, 1), stat(generic, 2)
                    out.append(
                        Figure(
                            f"{what}: rows/s direct / generic handler",
                            rate,
                            "rows/s",
                            baseline=grate,
                            baseline_name=f"FastAPI's generic handler ({GENERIC_TYPE})",
                            command=command,
                            note=f"{note}; generic p50 {g50 * 1000:.2f} ms (overhead "
                            f"{(g50 - here) * 1000:.2f} ms), p99 {g99 * 1000:.2f} ms",
                        )
                    )
                uncached = ("uncached", m.name, rows, clients)
                if uncached in found:
                    c50, c99, crate = stat(uncached, 0), stat(uncached, 1), stat(uncached, 2)
                    out.append(
                        Figure(
                            f"{what}: p50 cached / uncached records",
                            p50,
                            "s",
                            baseline=c50,
                            baseline_name="ZOOTRAIN_SERVING_CACHE_ENTRIES=0",
                            command=command,
                            note=f"{note}; uncached overhead {(c50 - here) * 1000:.2f} ms, p99 "
                            f"{c99 * 1000:.2f} ms, {crate:,.0f} rows/s",
                        )
                    )
    big = models[-1]
    what = f"predict: cold load of {big.name} ({len(big.data) / 1e6:.0f} MB) after a restart"
    pairs = [c / s for c, s in zip(cold, skops, strict=True)]
    loads = f"{len(cold)} fresh job services"
    out.append(
        Figure(
            what,
            med(cold),
            "s",
            baseline=med(skops),
            baseline_name="skops.io.load of the same file in a fresh process",
            command=command,
            note=f"median of {loads}; zootrain.ml.modelfile.load (type check + load) "
            f"{med(ours):.3f} s"
            + (
                f"; skops.io.load in the benchmark's own process {med(in_bench):.3f} s "
                f"({', '.join(f'{v:.3f}' for v in in_bench)})"
                if in_bench
                else ""
            ),
        )
    )
    out.append(
        Figure(
            f"{what}: per pair / skops",
            med(pairs),
            "x",
            goal=f"≤ {GOAL_COLD}x skops",
            met=med(pairs) <= GOAL_COLD,
            command=command,
            note=f"median of {loads}, each paired with a skops load in a fresh process just "
            "before or after it; "
            f"pairs {', '.join(f'{r:.2f}' for r in pairs)}",
        )
    )
    return out
