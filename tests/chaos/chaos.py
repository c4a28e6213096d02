"""Chaos run: a 3-node ZooKeeper ensemble, the job service and 3 workers (2 tasks at once each),
jobs streaming in, and while they run:

- workers SIGKILLed and replaced every few seconds, and workers SIGSTOPped (with their training
  processes) for longer than the session timeout, then resumed;
- the job service SIGKILLed and replaced;
- one ZooKeeper node killed and restarted, and a full quorum outage (two of three nodes) of
  twice the session timeout, while a prober times the job service's answers;
- the workers' connections cut by a proxy (testkit/zkproxy.py) at a shard's claim and at
  a job's publish, before the write reaches ZooKeeper or after it (the reply dropped).

Then everything is checked straight against ZooKeeper with a fresh client:

- every accepted job is terminal (none lost, none stuck), and succeeded unless the client's
  cancel was accepted; one job per Idempotency-Key, and no job nobody submitted;
- each succeeded job published exactly one model version (the one its record names), a
  cancelled job none, and no version exists without its succeeded job; versions are dense;
- no two live workers trained the same shard at the same time (claim intervals from the worker
  logs; a SIGKILLed worker's intervals end at its kill, a SIGSTOPped one's at its stop, and a
  claim answered after its resume, by the session the pause expired, is not a live one), and no
  shard's result was written twice;
- no job-service request took longer than its ZooKeeper deadline + 1 s during the outage;
- after the last collection, the artifact store holds no file that no record names, and every
  file a record names;
- once the workers are stopped (and the killed ones' sessions expired): no lock, queue entry,
  worker or election znode left behind.

The jobs, cancels and chaos schedule come from ``--seed``; what the processes do with them is
up to the machine's timing. Prints the counts; exits 1 if any check failed.

    python -m tests.chaos.chaos --jobs 30 --seed 7          # the short form the test suite runs
    python -m tests.chaos.chaos --long --seed 7             # 200 jobs, more chaos (make chaos)
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import logging
import os
import queue
import random
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: python tests/chaos/chaos.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss, KazooException
from kazoo.handlers.threading import KazooTimeoutError

from testkit.auth import AUTH, TOKENS
from testkit.http import RetryingClient
from testkit.stack import Process, Stack, wait_for
from testkit.zkproxy import MULTI, ZooKeeperProxy
from testkit.zkserver import Node, ZooKeeperCluster
from tests.support.store import referenced, stored, young_temporary
from zootrain.ml.algorithms import ALGORITHMS, check_task
from zootrain.ml.validation import validate_submission
from zootrain.records import JobSpec

SESSION_TIMEOUT = 4.0
REQUEST_DEADLINE = 5.0  # the job service's ZOOTRAIN_ZK_REQUEST_TIMEOUT (its default)
PAUSE = SESSION_TIMEOUT * 2.5  # a SIGSTOPped worker's pause: its session expires meanwhile
OUTAGE = SESSION_TIMEOUT * 2  # the full quorum outage
GC_GRACE = 20.0  # seconds an unreferenced artifact is kept after its last write
TERMINAL = ("succeeded", "failed", "cancelled")
# Proxy faults, in turn: a shard's claim write and a job's publishing multi, each cut before it
# reaches ZooKeeper, or let through with its reply dropped.
FAULTS: list[tuple[str, int, bytes]] = [
    ("cut", MULTI, b'"state":"running","attempts"'),
    ("drop_reply", MULTI, b'"state":"running","attempts"'),
    ("cut", MULTI, b'"state":"succeeded"'),
    ("drop_reply", MULTI, b'"state":"succeeded"'),
]

# Small datasets bundled with scikit-learn, and their task.
DATASETS = {
    "iris": "classification",
    "wine": "classification",
    "breast_cancer": "classification",
    "diabetes": "regression",
}


def _forest(rng: random.Random) -> dict[str, Any]:
    return {"n_estimators": rng.randint(2, 8), "max_depth": rng.randint(2, 6)}


# Parameters that keep every algorithm quick and convergent on these datasets; an algorithm
# not listed here trains with its defaults.
PARAMS: dict[str, Callable[[random.Random], dict[str, Any]]] = {
    "random_forest_classifier": _forest,
    "random_forest_regressor": _forest,
    "extra_trees_classifier": _forest,
    "extra_trees_regressor": _forest,
    "logistic_regression": lambda rng: {"max_iter": 100},
    "sgd_classifier": lambda rng: {"max_iter": 200},
    "sgd_regressor": lambda rng: {"max_iter": 200},
    "ridge": lambda rng: {"alpha": rng.choice([0.1, 1.0, 10.0])},
    "kmeans": lambda rng: {"n_clusters": 3, "n_init": 1},
}
# Algorithms the run may pick; forests (what zootrain is mostly for) twice as often.
WEIGHTS = {
    "random_forest_classifier": 3,
    "random_forest_regressor": 3,
    "extra_trees_classifier": 2,
    "extra_trees_regressor": 2,
}


# -- the plan (all from the seed) -----------------------------------------------------------------


@dataclass
class PlannedJob:
    index: int
    key: str
    spec: dict[str, Any]
    submit_at: float  # seconds after the start of the run
    cancel_after: float | None  # seconds after its submit, if the client cancels it


def plan_jobs(rng: random.Random, count: int, seed: int, cancel_rate: float) -> list[PlannedJob]:
    jobs: list[PlannedJob] = []
    at = 0.0
    for index in range(count):
        spec = _random_spec(rng, index)
        cancel = rng.uniform(0.0, 2.5) if rng.random() < cancel_rate else None
        jobs.append(PlannedJob(index, f"chaos-{seed}-{index}", spec, at, cancel))
        at += rng.uniform(0.1, 0.9)
    return jobs


def _random_spec(rng: random.Random, index: int) -> dict[str, Any]:
    while True:
        dataset = rng.choice(sorted(DATASETS))
        fitting = []
        for name in sorted(ALGORITHMS):
            try:
                check_task(name, DATASETS[dataset])  # type: ignore[arg-type]
            except ValueError:
                continue
            if name in PARAMS or name in ("gaussian_nb", "linear_regression", "multinomial_nb"):
                fitting += [name] * WEIGHTS.get(name, 1)
        algorithm = rng.choice(fitting)
        spec = {
            "model_name": f"chaos-{algorithm.replace('_', '-')}",
            "algorithm": algorithm,
            "params": PARAMS.get(algorithm, lambda _: {})(rng),
            "dataset": {"kind": "builtin", "name": dataset},
            "shards": rng.randint(2, 8),
            "random_state": rng.randint(0, 10_000),
            # Every kill of a shard's worker costs an attempt: leave room for a run of bad luck.
            "max_attempts": 10,
            "priority": rng.randint(0, 9),
        }
        try:
            validate_submission(JobSpec.model_validate(spec))
        except ValueError:
            continue  # e.g. a partition the algorithm refuses: draw again
        return spec


# -- HTTP through restarts ------------------------------------------------------------------------


class Submitter(threading.Thread):
    """Submits the planned jobs on schedule (each under its Idempotency-Key, retried with the
    same key until answered) and cancels the ones planned to be cancelled."""

    def __init__(self, client: RetryingClient, jobs: list[PlannedJob], start: float) -> None:
        super().__init__(daemon=True, name="submitter")
        self.client = client
        self.jobs = jobs
        self.start_time = start
        self.accepted: dict[int, str] = {}  # planned index -> job id
        self.statuses: dict[int, int] = {}
        self.cancels: dict[int, int] = {}  # planned index -> status of the DELETE (200 or 409)
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        events: list[tuple[float, int, str]] = [(j.submit_at, j.index, "submit") for j in self.jobs]
        heapq.heapify(events)
        try:
            while events:
                at, index, what = heapq.heappop(events)
                delay = self.start_time + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                job = self.jobs[index]
                if what == "submit":
                    response = self.client.request(
                        "POST", "/v1/jobs", json=job.spec, headers={"Idempotency-Key": job.key}
                    )
                    self.statuses[index] = response.status_code
                    if response.status_code not in (200, 202):
                        self.errors.append(
                            f"submit {job.key}: {response.status_code} {response.text}"
                        )
                        continue
                    self.accepted[index] = response.json()["id"]
                    if job.cancel_after is not None:
                        due = time.monotonic() - self.start_time + job.cancel_after
                        heapq.heappush(events, (due, index, "cancel"))
                else:
                    response = self.client.request("DELETE", f"/v1/jobs/{self.accepted[index]}")
                    if response.status_code not in (200, 409):
                        self.errors.append(
                            f"cancel {job.key}: {response.status_code} {response.text}"
                        )
                    self.cancels[index] = response.status_code
        except Exception as exc:  # reported as a violation
            self.errors.append(f"submitter: {exc!r}")
        finally:
            self.done.set()


class Starter(threading.Thread):
    """Starts replacement workers one at a time (a start takes seconds; the chaos goes on),
    never while ZooKeeper has no quorum (a worker needs a session to start)."""

    def __init__(self, stack: Stack, workers: list[Process], extra: dict[str, str]) -> None:
        super().__init__(daemon=True, name="starter")
        self.stack = stack
        self.workers = workers
        self.extra = extra
        self.lock = threading.Lock()
        self.requests: queue.Queue[bool] = queue.Queue()
        self.errors: list[str] = []
        self.quorum = threading.Event()
        self.quorum.set()
        self.stopped: set[str] = set()  # SIGSTOPped workers: alive, but not to be chosen

    def alive(self) -> list[Process]:
        with self.lock:
            return [w for w in self.workers if w.alive() and w.name not in self.stopped]

    def remove(self, process: Process) -> None:
        with self.lock:
            self.workers.remove(process)

    def run(self) -> None:
        while self.requests.get():
            try:
                self.quorum.wait()
                process = self.stack.start_worker("worker", **self.extra)
                with self.lock:
                    self.workers.append(process)
            except Exception as exc:
                self.errors.append(f"starting a worker: {exc!r}")
            finally:
                self.requests.task_done()


class Prober:
    """Times job-service requests, one kind per thread, each every half second (a job's
    record, the job list, the models, the workers), to find any that waited on ZooKeeper
    longer than its deadline."""

    PATHS = ("job", "/v1/jobs?limit=5", "/v1/models", "/v1/workers")

    def __init__(self, client: RetryingClient, submitter: Submitter) -> None:
        self.client = client
        self.submitter = submitter
        self.samples: list[tuple[float, float, int | str]] = []  # start, seconds, status
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._probe, args=(p,), daemon=True, name=f"probe {p}")
            for p in self.PATHS
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def _probe(self, path: str) -> None:
        while not self.stopping.wait(0.5):
            if path == "job":
                accepted = list(self.submitter.accepted.values())
                if not accepted:
                    continue
                path_now = f"/v1/jobs/{accepted[-1]}"
            else:
                path_now = path
            started = time.monotonic()
            try:
                response = httpx.get(
                    self.client.url + path_now, headers=self.client.headers, timeout=60
                )
                outcome: int | str = response.status_code
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            self.samples.append((started, time.monotonic() - started, outcome))


# -- reading ZooKeeper ----------------------------------------------------------------------------


class Reader:
    """A plain kazoo client, tolerant of the ZooKeeper node it talks to dying; a read that gets
    no answer in 3 s (a quorum outage: kazoo would wait for as long as it lasts) raises."""

    def __init__(self, hosts: str, root: str) -> None:
        self.client = KazooClient(hosts=hosts, timeout=10)
        self.client.start(30)
        self.root = root

    def close(self) -> None:
        self.client.stop()
        self.client.close()

    @staticmethod
    def _wait(result: Any) -> Any:
        try:
            return result.get(timeout=3)
        except KazooTimeoutError:
            raise ConnectionLoss("no answer from ZooKeeper within 3 s") from None

    def _exists(self, full: str) -> bool:
        return self._wait(self.client.exists_async(full)) is not None

    def children(self, path: str) -> list[str]:
        full = f"{self.root}/{path}" if path else self.root
        if not self._exists(full):
            return []
        return sorted(self._wait(self.client.get_children_async(full)))

    def json(self, path: str) -> dict[str, Any] | None:
        full = f"{self.root}/{path}"
        if not self._exists(full):
            return None
        data, _ = self._wait(self.client.get_async(full))
        value: dict[str, Any] = json.loads(data)
        return value

    def data(self, path: str) -> str | None:
        full = f"{self.root}/{path}"
        if not self._exists(full):
            return None
        data, _ = self._wait(self.client.get_async(full))
        return str(data.decode())

    def unfinished(self, job_ids: list[str]) -> list[str]:
        left = []
        for job_id in job_ids:
            record = self.json(f"jobs/{job_id}")
            if record is None or record["state"] not in TERMINAL:
                left.append(job_id)
        return left


# -- worker logs ----------------------------------------------------------------------------------

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ (.*)$")
_CLAIM = re.compile(r"^claim ([0-9a-f]{20})/(\d+) attempt (\d+)$")
_KEY = re.compile(r"\b([0-9a-f]{20})/(\d+)(?![\d])")
_DONE = re.compile(r" done ([0-9a-f]{20})/(\d+) in ")


@dataclass
class Interval:
    worker: str
    job: str
    index: int
    attempt: int
    start: float
    end: float
    how: str  # the line (or event) that ended it
    # Logged after a SIGCONT, before the worker's next "session LOST": the answer to a claim
    # sent before its SIGSTOP, by the session the pause expired (claim_intervals).
    stale: bool = False


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def claim_intervals(
    process: Process, killed_at: float | None, ended_at: float, resumed: Sequence[float] = ()
) -> list[Interval]:
    """A worker's shard claims, each from its "claim" line to the first later line about the
    same shard (done, stopped, failed, discarded) or, failing one, the worker's death.

    A claim's multi sent just before a SIGSTOP is answered (and logged) only after the SIGCONT
    (``resumed``), by which time the pause has expired its session and another worker may
    train the shard. Until the worker's next "session LOST" line, such a claim is the expired
    session's: the worker stops it on that loss, and nothing it computes can be written (the
    record's version fences it). It is marked ``stale``, as a paused worker's claims end at
    its stop (cut_at_pauses)."""
    open_claims: dict[tuple[str, int], Interval] = {}
    found: list[Interval] = []
    resumes = sorted(resumed)
    old_session = False
    for raw in process.output().splitlines():
        line = _LINE.match(raw)
        if line is None:
            continue
        when, message = _stamp(line[1]), line[2]
        while resumes and when >= resumes[0]:
            resumes.pop(0)
            old_session = True
        if message.endswith("session LOST"):
            old_session = False
        claim = _CLAIM.match(message)
        if claim is not None:
            key = (claim[1], int(claim[2]))
            open_claims[key] = Interval(
                process.name, key[0], key[1], int(claim[3]), when, float("inf"), "", old_session
            )
            continue
        for job, index in _KEY.findall(message):
            interval = open_claims.pop((job, int(index)), None)
            if interval is not None:
                interval.end, interval.how = when, message[:80]
                found.append(interval)
    for interval in open_claims.values():
        if killed_at is not None:
            interval.end, interval.how = killed_at, "SIGKILL"
        else:
            interval.end, interval.how = ended_at, "exit"
        found.append(interval)
    return found


def cut_at_pauses(intervals: list[Interval], paused: dict[str, list[float]]) -> None:
    """A SIGSTOPped worker's claims end at its stop: its session expired during the pause, and
    whatever it computes after resuming it can no longer write."""
    for interval in intervals:
        for stopped_at in paused.get(interval.worker, []):
            if interval.start < stopped_at < interval.end:
                interval.end, interval.how = stopped_at, "SIGSTOP"


def written_twice(processes: list[Process]) -> list[str]:
    """Shards whose result two attempts wrote (a "done" line follows only a successful write)."""
    done: dict[tuple[str, str], int] = {}
    for process in processes:
        for job, index in _DONE.findall(process.output()):
            done[(job, index)] = done.get((job, index), 0) + 1
    return [f"{job}/{index}" for (job, index), count in done.items() if count > 1]


def overlaps(intervals: list[Interval]) -> list[str]:
    by_shard: dict[tuple[str, int], list[Interval]] = {}

    for interval in intervals:
        if not interval.stale:
            by_shard.setdefault((interval.job, interval.index), []).append(interval)
    found = []
    for (job, index), group in by_shard.items():
        group.sort(key=lambda i: i.start)
        for position, first in enumerate(group):
            for second in group[position + 1 :]:
                if second.worker != first.worker and second.start < first.end:
                    found.append(
                        f"shard {job}/{index} trained by {first.worker} (attempt {first.attempt}, "
                        f"until {first.how!r}) and {second.worker} (attempt {second.attempt}) "
                        f"for {min(first.end, second.end) - second.start:.3f}s at once"
                    )
    return found


# -- the run --------------------------------------------------------------------------------------


@dataclass
class Report:
    seed: int
    jobs: int
    accepted: int = 0
    terminal: int = 0
    lost: int = 0
    stuck: int = 0
    succeeded: int = 0
    cancelled: int = 0
    failed: int = 0
    versions: int = 0
    double_published: int = 0
    shard_claims: int = 0
    reclaims: int = 0
    written_twice: int = 0
    worker_kills: int = 0
    busy_kills: int = 0  # of a worker holding a lock: training or merging
    worker_stops: int = 0  # SIGSTOPs past the session timeout
    api_restarts: int = 0
    zk_restarts: int = 0
    quorum_outages: int = 0
    outage_requests: int = 0  # job-service requests timed during the quorum outages
    slow_requests: int = 0  # ... that took longer than the deadline + 1 s
    slowest_request: float = 0.0
    proxy_faults: int = 0  # connections cut (or replies dropped) by the proxy
    unreferenced_files: int = 0  # in the store after the final collection
    missing_files: int = 0  # named by a record, not in the store
    client_retries: int = 0
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"chaos seed={self.seed} jobs={self.jobs} accepted={self.accepted} "
            f"terminal={self.terminal}/{self.accepted} lost={self.lost} stuck={self.stuck} "
            f"succeeded={self.succeeded} cancelled={self.cancelled} failed={self.failed} "
            f"versions={self.versions} double_published={self.double_published} "
            f"shard_claims={self.shard_claims} reclaims={self.reclaims} "
            f"written_twice={self.written_twice} worker_kills={self.worker_kills} "
            f"busy_kills={self.busy_kills} worker_stops={self.worker_stops} "
            f"api_restarts={self.api_restarts} zk_restarts={self.zk_restarts} "
            f"quorum_outages={self.quorum_outages} outage_requests={self.outage_requests} "
            f"slow_requests={self.slow_requests} slowest={self.slowest_request:.1f}s "
            f"proxy_faults={self.proxy_faults} unreferenced_files={self.unreferenced_files} "
            f"missing_files={self.missing_files} client_retries={self.client_retries} "
            f"violations={len(self.violations)} in {self.seconds:.0f}s"
        )


@dataclass
class ZkEvent:
    at: float
    kind: str  # "node": one node down; "quorum": two of the three down
    down_for: float
    which: str = "follower"  # for "node": "leader" or "follower"


@dataclass
class Chaos:
    """Timed events; worker kills come every few seconds while jobs come in."""

    api_restart_at: list[float]
    zk_events: list[ZkEvent]  # one at a time, in order
    stop_at: list[float]  # SIGSTOPs of a worker, each for PAUSE seconds
    fault_at: list[float]  # proxy faults armed, in FAULTS' order, round and round
    kill_every: tuple[float, float]
    min_kills: int


def schedule(rng: random.Random, span: float, long: bool) -> Chaos:
    """When each fault strikes, spread over the submit span."""
    rounds = 3 if long else 1
    zk: list[ZkEvent] = []
    for number in range(rounds):
        # Each round: a node killed and restarted, then (in the first round and the last) the
        # whole quorum gone. A round's slot keeps its events apart.
        slot = span / rounds
        base = number * slot
        which = rng.choice(["leader", "follower"])
        zk.append(ZkEvent(base + rng.uniform(0.1, 0.3) * slot, "node", rng.uniform(3, 6), which))
        if number in (0, rounds - 1):
            zk.append(ZkEvent(base + rng.uniform(0.55, 0.75) * slot, "quorum", OUTAGE))
    faults = 3 * len(FAULTS) if long else len(FAULTS)
    return Chaos(
        api_restart_at=sorted(rng.uniform(0.2, 0.9) * span for _ in range(rounds)),
        zk_events=zk,
        stop_at=sorted(rng.uniform(0.1, 0.8) * span for _ in range(3 if long else 1)),
        fault_at=sorted(rng.uniform(0.05, 0.6) * span for _ in range(faults)),
        kill_every=(2.0, 5.0),
        min_kills=10 if long else 3,
    )


def run(
    jobs: int = 30,
    seed: int = 1,
    long: bool = False,
    directory: Path | None = None,
    say: Callable[[str], None] = lambda message: None,
) -> Report:
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # our reader's reconnects are expected
    directory = Path(directory or tempfile.mkdtemp(prefix="zootrain-chaos-"))
    rng = random.Random(seed)
    plan = plan_jobs(rng, jobs, seed, cancel_rate=0.2)
    span = plan[-1].submit_at if plan else 0.0
    chaos_rng = random.Random(seed * 7919 + 1)
    chaos = schedule(chaos_rng, span, long)
    report = Report(seed=seed, jobs=jobs)
    started = time.monotonic()
    cluster = ZooKeeperCluster(directory / "zookeeper", size=3).start()
    # The workers reach the ensemble through a proxy that cuts their connections on cue.
    proxy = ZooKeeperProxy([n.client_port for n in cluster.nodes]).start()
    root = f"/chaos-{uuid.uuid4().hex[:10]}"
    store = directory / "artifacts"
    env = {
        "ZOOTRAIN_ZK_HOSTS": cluster.hosts,
        "ZOOTRAIN_ZK_ROOT": root,
        "ZOOTRAIN_ARTIFACTS": str(store),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": str(SESSION_TIMEOUT),
        "ZOOTRAIN_ZK_REQUEST_TIMEOUT": str(REQUEST_DEADLINE),
        "ZOOTRAIN_RETRY_BACKOFF": "0.2",
        "ZOOTRAIN_HOUSEKEEPING_INTERVAL": "2",
        "ZOOTRAIN_ARTIFACT_GC_INTERVAL": "3",
        "ZOOTRAIN_ARTIFACT_GC_GRACE": str(GC_GRACE),
        "ZOOTRAIN_TOKENS": TOKENS,
        "ZOOTRAIN_SUBMIT_RATE": "0",  # the jobs stream in faster than a token may submit
    }
    worker_env = {"ZOOTRAIN_ZK_HOSTS": proxy.address, "ZOOTRAIN_WORKER_CONCURRENCY": "2"}
    stack = Stack(directory, env)
    killed: dict[str, float] = {}  # worker process name -> wall-clock kill time
    paused: dict[str, list[float]] = {}  # worker process name -> wall-clock stop times
    resumed: dict[str, list[float]] = {}  # ... and resume times
    ended: dict[str, float] = {}
    outages: list[tuple[float, float]] = []  # monotonic (start, end) of quorum outages
    reader: Reader | None = None
    try:
        api = stack.start_api()
        assert stack.api_url is not None
        starter = Starter(
            stack, [stack.start_worker("worker", **worker_env) for _ in range(3)], worker_env
        )
        starter.start()
        reader = Reader(cluster.hosts, root)
        # Retried until answered, for up to two minutes per request: connection errors and
        # 502/503/504 only; a 500 is a bug and ends the run as a violation.
        client = RetryingClient(stack.api_url, timeout=15.0, headers=AUTH, deadline=120.0)
        submitter = Submitter(client, plan, time.monotonic())
        submitter.start()
        prober = Prober(client, submitter)
        prober.start()
        t0 = submitter.start_time
        say(f"{len(plan)} jobs over {span:.0f}s; logs in {directory}")

        next_kill = t0 + chaos_rng.uniform(*chaos.kill_every)
        api_restarts = list(chaos.api_restart_at)
        zk_events = list(chaos.zk_events)
        stops = list(chaos.stop_at)
        faults = list(chaos.fault_at)
        armed = 0
        zk_down: tuple[list[Node], float, float] | None = None  # (nodes, restart at, since)
        stopped: tuple[Process, float] | None = None  # (worker, resume at)
        # A stuck job waits forever; a slow one does not. The short form's eight-shard jobs in
        # rounds took 150 s on two cores shared with a second test process (make test's xdist).
        deadline = t0 + span + (900 if long else 300)
        finished = False
        while True:
            now = time.monotonic()
            if api_restarts and now - t0 >= api_restarts[0] and zk_down is None:
                api_restarts.pop(0)
                api.kill()
                api = stack.start_api()
                assert stack.api_url is not None
                client.url = stack.api_url
                report.api_restarts += 1
                say(f"{now - t0:5.1f}s job service restarted")
            if zk_down is None and stopped is None and zk_events and now - t0 >= zk_events[0].at:
                event = zk_events.pop(0)
                nodes = _zk_victims(cluster, event)
                if event.kind == "quorum":
                    starter.quorum.clear()
                for node in nodes:
                    cluster.kill_node(node)
                zk_down = (nodes, time.monotonic() + event.down_for, time.monotonic())
                names = ", ".join(str(n.myid) for n in nodes)
                say(f"{now - t0:5.1f}s ZooKeeper {event.kind} down (node {names})")
            if zk_down is not None and now >= zk_down[1]:
                nodes, _, since = zk_down
                # All at once: after a quorum outage, one restarted node alone cannot serve
                # (it needs the other for a quorum), so waiting for each in turn would hang.
                for node in nodes:
                    cluster.start_node(node, wait=False)
                cluster.wait_ready(180)
                if len(nodes) > 1:
                    outages.append((since, time.monotonic()))
                    report.quorum_outages += 1
                    starter.quorum.set()
                report.zk_restarts += len(nodes)
                say(f"{now - t0:5.1f}s ZooKeeper back ({len(nodes)} node(s) restarted)")
                zk_down = None
            if faults and now - t0 >= faults[0]:
                faults.pop(0)
                action, opcode, needle = FAULTS[armed % len(FAULTS)]
                proxy.add_rule(opcode, f"{root}/jobs/", needle, action)
                armed += 1
            # A pause while ZooKeeper is whole: the session must expire (no leader, no expiry).
            no_quorum = zk_down is not None and len(zk_down[0]) > 1
            if (
                stopped is None
                and zk_down is None
                and stops
                and now - t0 >= stops[0]
                and len(starter.alive()) >= 2
            ):
                stops.pop(0)
                victim, _ = _choose_victim(chaos_rng, starter.alive(), reader)
                os.killpg(victim.popen.pid, signal.SIGSTOP)  # the worker and its children
                paused.setdefault(victim.name, []).append(time.time())
                starter.stopped.add(victim.name)
                stopped = (victim, time.monotonic() + PAUSE)
                report.worker_stops += 1
                say(f"{now - t0:5.1f}s {victim.name} SIGSTOPped for {PAUSE:.0f}s")
            if stopped is not None and now >= stopped[1]:
                victim = stopped[0]
                # Stamped before the SIGCONT: every line the worker logs after it comes later.
                resumed.setdefault(victim.name, []).append(time.time())
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(victim.popen.pid, signal.SIGCONT)
                starter.stopped.discard(victim.name)
                stopped = None
                say(f"{now - t0:5.1f}s {victim.name} resumed")
            # Kills go on while jobs come in, and until there were enough: then the jobs may
            # finish (on a loaded machine a kill every few seconds can outpace the restarts).
            killing = not submitter.done.is_set() or report.worker_kills < chaos.min_kills
            if killing and now >= next_kill and len(starter.alive()) >= 2 and not no_quorum:
                victim, busy = _choose_victim(chaos_rng, starter.alive(), reader)
                if not busy and now < next_kill + 2.0 and not finished:
                    time.sleep(0.1)  # give work in progress a moment to show up: kill that
                    continue
                report.busy_kills += busy
                victim.kill()
                killed[victim.name] = time.time()
                starter.remove(victim)
                starter.requests.put(True)  # a replacement, started in the background
                report.worker_kills += 1
                say(f"{now - t0:5.1f}s {victim.name} SIGKILLed")
                next_kill = time.monotonic() + chaos_rng.uniform(*chaos.kill_every)

            finished = (
                submitter.done.is_set()
                and not no_quorum
                and not _safe(lambda: reader.unfinished(list(submitter.accepted.values())), [""])
            )
            chaos_done = (
                not api_restarts
                and not zk_events
                and zk_down is None
                and not stops
                and stopped is None
                and not faults
                and report.worker_kills >= chaos.min_kills
            )
            if finished and chaos_done:
                break
            if time.monotonic() > deadline:
                left = _safe(lambda: reader.unfinished(list(submitter.accepted.values())), [])
                report.violations.append(
                    f"not done by the deadline: {len(left)} unfinished jobs, e.g. {left[:3]}"
                )
                break
            time.sleep(0.25)

        if stopped is not None:  # the deadline passed mid-pause
            resumed.setdefault(stopped[0].name, []).append(time.time())
            with contextlib.suppress(ProcessLookupError):
                os.killpg(stopped[0].popen.pid, signal.SIGCONT)
        prober.stopping.set()
        submitter.join(30)
        prober.join(30)
        starter.requests.join()  # no worker half-started when we stop them all
        starter.requests.put(False)
        proxy.clear_rules()
        report.proxy_faults = len(proxy.faults)
        report.violations += submitter.errors + starter.errors
        report.client_retries = client.retries
        _outage_requests(report, outages, client.attempts + prober.samples)

        _check_live_locks(report, reader, stack, starter.alive())
        _check_store(report, reader, store)

        # Stop everyone cleanly; the killed workers' sessions expire on their own.
        for process in stack.processes:
            if process.name.startswith("worker") and process.alive():
                code = process.stop(60)
                ended[process.name] = time.time()
                if code != 0:
                    report.violations.append(f"{process.name} exited with {code} on SIGTERM")
        api.stop(20)
        _check(report, reader, plan, submitter, stack, killed, paused, resumed, ended)
    finally:
        if reader is not None:
            reader.close()
        stack.stop()
        proxy.close()
        cluster.stop()
        report.seconds = time.monotonic() - started
    return report


def _zk_victims(cluster: ZooKeeperCluster, event: ZkEvent) -> list[Node]:
    """The node(s) an event takes down: one (the leader or a follower), or two of three."""
    leader = _leader(cluster)
    others = [n for n in cluster.nodes if n is not leader and n.process is not None]
    if event.kind == "quorum":
        return [leader, others[0]]
    return [leader] if event.which == "leader" else [others[0]]


def _leader(cluster: ZooKeeperCluster, timeout: float = 60.0) -> Node:
    """The ensemble's leader, once it has one (a node restarted a moment ago may still be
    taking part in an election)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return cluster.leader()
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _outage_requests(
    report: Report,
    outages: list[tuple[float, float]],
    samples: list[tuple[float, float, int | str]],
) -> None:
    """Job-service requests that overlapped a quorum outage: none may have waited longer than
    the deadline + 1 s (a hang shows as the client's own timeout)."""
    limit = REQUEST_DEADLINE + 1.0
    for start, end in outages:
        during = [s for s in samples if s[0] <= end and s[0] + s[1] >= start]
        report.outage_requests += len(during)
        slow = [s for s in during if s[1] > limit]
        report.slow_requests += len(slow)
        report.slowest_request = max([report.slowest_request, *(s[1] for s in during)])
        if slow:
            report.violations.append(
                f"{len(slow)} requests during the quorum outage took longer than {limit:.0f}s: "
                f"{[(round(s[1], 1), s[2]) for s in slow[:5]]}"
            )
    if outages and not report.outage_requests:
        report.violations.append("no job-service request was timed during the quorum outage")


def _check_store(report: Report, reader: Reader, store: Path) -> None:
    """After the last collection (every job finished, the grace period over), the store holds
    exactly the files the records name, and temporary files younger than an hour."""
    final: dict[str, set[str]] = {}

    def settled() -> bool:
        files = stored(store)
        expected = _safe(lambda: referenced(reader.client, reader.root, store), None)
        if expected is None:
            return False
        final["extra"] = files - expected - young_temporary(store, files)
        final["missing"] = expected - files
        return not final["extra"] and not final["missing"]

    with contextlib.suppress(TimeoutError):
        wait_for(settled, GC_GRACE * 3 + 30, "the last collection", interval=1.0)
    report.unreferenced_files = len(final.get("extra", ()))
    report.missing_files = len(final.get("missing", ()))
    if report.unreferenced_files:
        report.violations.append(
            f"{report.unreferenced_files} unreferenced files left in the store after the "
            f"last collection, e.g. {sorted(final['extra'])[:3]}"
        )
    if report.missing_files:
        report.violations.append(
            f"{report.missing_files} files named by records are missing from the store, "
            f"e.g. {sorted(final['missing'])[:3]}"
        )


def _check_live_locks(report: Report, reader: Reader, stack: Stack, live: list[Process]) -> None:
    """Every job is finished: once the killed workers' sessions are gone, the live workers hold
    no lock (a release cut off by a connection drop included: it is retried)."""
    live_ids = {_worker_id(w) for w in live}
    with contextlib.suppress(TimeoutError):
        wait_for(
            lambda: set(_safe(lambda: reader.children("workers"), ["?"])) <= live_ids,
            SESSION_TIMEOUT * 3 + 10,
            "the killed workers' sessions to expire",
        )
    held: list[str] = []

    def released() -> bool:
        held[:] = _safe(lambda: reader.children("locks"), ["?"])
        return not held

    with contextlib.suppress(TimeoutError):
        wait_for(released, 20, "the live workers to release their locks")
    if held:
        logs = "\n".join(p.output() for p in stack.processes if p.name.startswith("worker"))
        hints = [line for line in logs.splitlines() if "could not release" in line]
        report.violations.append(
            f"locks held by live workers after every job finished: {held[:5]} {hints[:3]}"
        )


def _safe(read: Callable[[], Any], fallback: Any) -> Any:
    try:
        return read()
    except KazooException:
        return fallback


def _choose_victim(
    rng: random.Random, workers: list[Process], reader: Reader
) -> tuple[Process, bool]:
    """A random worker, preferring one that holds a lock (is training or merging)."""

    def owners() -> set[str]:
        found = set()
        for name in reader.children("locks"):
            with contextlib.suppress(KazooException):  # released meanwhile
                owner = reader.data(f"locks/{name}")
                if owner:
                    found.add(owner)
        return found

    holding = _safe(owners, set())
    busy = [w for w in workers if _worker_id(w) in holding]
    return rng.choice(busy or workers), bool(busy)


def _worker_id(process: Process) -> str | None:
    found = re.search(r"worker (\S+) ready", process.output())
    return found[1] if found else None


def _check(
    report: Report,
    reader: Reader,
    plan: list[PlannedJob],
    submitter: Submitter,
    stack: Stack,
    killed: dict[str, float],
    paused: dict[str, list[float]],
    resumed: dict[str, list[float]],
    ended: dict[str, float],
) -> None:
    bad = report.violations
    accepted = submitter.accepted
    report.accepted = len(accepted)
    if len(set(accepted.values())) != len(accepted):
        bad.append("two keys were answered with the same job")
    unanswered = [plan[i].key for i in range(len(plan)) if i not in accepted]
    if unanswered:
        bad.append(f"submits never accepted: {unanswered[:5]}")

    with contextlib.suppress(TimeoutError):  # what stays is reported below
        wait_for(
            lambda: not reader.children("workers") and not reader.children("election"),
            SESSION_TIMEOUT * 3 + 10,
            "the killed workers' sessions to expire",
        )

    # Jobs: every accepted one terminal, succeeded unless its cancel was accepted.
    stored = reader.children("jobs")
    strays = sorted(set(stored) - set(accepted.values()))
    if strays:
        bad.append(f"{len(strays)} jobs nobody was answered with: {strays[:5]}")
    records: dict[str, dict[str, Any]] = {}
    for index, job_id in accepted.items():
        record = reader.json(f"jobs/{job_id}")
        if record is None:
            report.lost += 1
            bad.append(f"accepted job {job_id} ({plan[index].key}) does not exist")
            continue
        records[job_id] = record
        state = record["state"]
        if state in TERMINAL:
            report.terminal += 1
        else:
            report.stuck += 1
        expected = "cancelled" if submitter.cancels.get(index) == 200 else "succeeded"
        if state == "succeeded":
            report.succeeded += 1
        elif state == "cancelled":
            report.cancelled += 1
        elif state == "failed":
            report.failed += 1
        if state != expected:
            bad.append(
                f"job {job_id} ({plan[index].spec['algorithm']} on "
                f"{plan[index].spec['dataset']['name']}) is {state}, expected {expected}: "
                f"{record.get('error')}"
            )
        if state == "succeeded":
            shards = [
                reader.json(f"jobs/{job_id}/shards/{n}")
                for n in reader.children(f"jobs/{job_id}/shards")
            ]
            if not shards or any(s is None or s["state"] != "done" for s in shards):
                bad.append(
                    f"succeeded job {job_id} has shards {[s and s['state'] for s in shards]}"
                )

    # Idempotency: one key record per accepted submit, naming its job.
    keys: list[str] = []
    pending = [f"{reader.root}/idempotency"]
    while pending:
        path = pending.pop()
        names = reader.client.get_children(path)
        if not names and path != f"{reader.root}/idempotency":
            data, _ = reader.client.get(path)
            if data:
                keys.append(json.loads(data)["job_id"])
        pending.extend(f"{path}/{n}" for n in names)
    if sorted(keys) != sorted(accepted.values()):
        bad.append(f"{len(keys)} Idempotency-Key records for {len(accepted)} accepted submits")

    # Versions: exactly one per succeeded job, none for any other, numbers dense per model.
    by_job: dict[str, list[tuple[str, int]]] = {}
    for model in reader.children("models"):
        numbers = []
        for node in reader.children(f"models/{model}"):
            version = reader.json(f"models/{model}/{node}")
            number = int(node.rsplit("-", 1)[1]) + 1
            numbers.append(number)
            if version is not None:
                by_job.setdefault(version["job_id"], []).append((model, number))
        report.versions += len(numbers)
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            bad.append(f"model {model} has versions {sorted(numbers)}")
    for job_id, published in by_job.items():
        record = records.get(job_id)
        if record is None or record["state"] != "succeeded":
            bad.append(
                f"version(s) {published} of job {job_id} which is {record and record['state']}"
            )
        elif len(published) != 1:
            report.double_published += 1
            bad.append(f"job {job_id} published {len(published)} versions: {published}")
        elif record["model"] != {"name": published[0][0], "version": published[0][1]}:
            bad.append(f"job {job_id} names {record['model']} but published {published[0]}")
    for job_id, record in records.items():
        if record["state"] == "succeeded" and job_id not in by_job:
            bad.append(f"succeeded job {job_id} published nothing")

    # One live trainer per shard at any moment.
    intervals: list[Interval] = []
    now = time.time()
    for process in stack.processes:
        if process.name.startswith("worker"):
            intervals += claim_intervals(
                process,
                killed.get(process.name),
                ended.get(process.name, now),
                resumed.get(process.name, []),
            )
    cut_at_pauses(intervals, paused)
    report.shard_claims = len(intervals)
    report.reclaims = sum(1 for i in intervals if i.attempt > 1)
    bad += overlaps(intervals)
    workers = [p for p in stack.processes if p.name.startswith("worker")]
    twice = written_twice(workers)
    report.written_twice = len(twice)
    if twice:
        bad.append(f"{len(twice)} shards had two attempts' results written: {twice[:5]}")

    # Nothing left behind.
    for path in ("locks", "queue", "workers", "election"):
        left = reader.children(path)
        if left:
            bad.append(f"/{path} still holds {left[:5]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=None, help="jobs to submit (30; 200 --long)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--long", action="store_true", help="200 jobs and more chaos")
    parser.add_argument("--dir", type=Path, default=None, help="keep logs here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    jobs = args.jobs if args.jobs is not None else (200 if args.long else 30)
    report = run(
        jobs=jobs,
        seed=args.seed,
        long=args.long,
        directory=args.dir,
        say=(lambda _: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True)),
    )
    for violation in report.violations:
        print(f"VIOLATION: {violation}")
    print(report.summary())
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
