"""Prometheus metrics of the job service, served at /metrics."""

from __future__ import annotations

import asyncio
import logging
import time

from kazoo.exceptions import KazooException
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from zootrain.paths import sorted_queue
from zootrain.queue import JobQueue
from zootrain.records import JobState
from zootrain.zk_metrics import ZOOKEEPER_CONNECTED as CONNECTED
from zootrain.zk_metrics import ZOOKEEPER_WATCHES as WATCHES

SUBMITS = Counter("zootrain_jobs_submitted_total", "Jobs accepted by POST /v1/jobs")
SUBMIT_REPLAYS = Counter(
    "zootrain_submit_replays_total", "Submits answered from an earlier Idempotency-Key"
)
SUBMIT_SECONDS = Histogram(
    "zootrain_submit_latency_seconds",
    "Time to validate and record a job (the submit multi included)",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SUBMIT_CHECKS = Counter(
    "zootrain_submit_checks_total",
    "Submit validations (scikit-learn's checks and the cost), by where the answer came from: "
    "a child process, or the answer a child gave for the same checked fields (cached)",
    ["source"],
)
CHECKED_BY_CHILD = SUBMIT_CHECKS.labels(source="child")
CHECKED_FROM_CACHE = SUBMIT_CHECKS.labels(source="cached")
CANCELS = Counter("zootrain_jobs_cancelled_total", "Jobs cancelled through DELETE /v1/jobs/{id}")
REJECTED = Counter("zootrain_submits_rejected_total", "Submits refused", ["reason"])
QUEUE_DEPTH = Gauge("zootrain_queue_depth", "Unfinished jobs in the ZooKeeper queue")
UNFINISHED = Gauge("zootrain_jobs", "Unfinished jobs by state", ["state"])
AUTH_FAILURES = Counter(
    "zootrain_auth_failures_total", "Requests refused by authentication", ["reason"]
)
PREDICTIONS = Counter("zootrain_predictions_total", "Rows predicted", ["model"])
MODEL_LOADS = Counter("zootrain_model_loads_total", "Model files read into the prediction cache")
PREDICT_SECONDS = Counter(
    "zootrain_predict_seconds_total",
    "Seconds the prediction processes spent in models' predict calls (the model's own time: "
    "a request's latency less this is the service's share)",
)
PREDICT_CALLS = Counter(
    "zootrain_predict_calls_total", "Models' predict calls made (a micro-batch is one)"
)
MODEL_CACHE_BYTES = Gauge(
    "zootrain_model_cache_bytes", "Bytes of loaded models the prediction cache keeps"
)
EVENT_STREAMS = Gauge("zootrain_event_streams", "Event streams open in this process")

log = logging.getLogger("zootrain.api")

_REFRESH_EVERY = 5.0  # seconds: a scrape reads the queue at most this often
_last_refresh = 0.0
_refresh_lock = asyncio.Lock()


async def render(queue: JobQueue) -> tuple[bytes, str]:
    await _refresh(queue)
    return generate_latest(), CONTENT_TYPE_LATEST


async def _refresh(queue: JobQueue) -> None:
    CONNECTED.set(1 if queue.zk.connected else 0)
    for kind, count in queue.zk.watch_counts().items():
        WATCHES.labels(kind=kind).set(count)
    try:
        await _refresh_queue(queue)
    except (KazooException, TimeoutError) as exc:
        # A scrape during a ZooKeeper outage still answers: with the figures last read.
        log.debug("metrics: queue figures not refreshed: %r", exc)


async def _refresh_queue(queue: JobQueue) -> None:
    global _last_refresh
    async with _refresh_lock:
        if time.monotonic() - _last_refresh < _REFRESH_EVERY or not queue.zk.connected:
            return
        names = await queue.zk.get_children(queue.paths.queue)
        entries = sorted_queue(names)
        QUEUE_DEPTH.set(len(entries))
        counts = dict.fromkeys((JobState.queued, JobState.running, JobState.merging), 0)
        jobs = await asyncio.gather(
            *(queue.read_job(e.job_id) for e in entries), return_exceptions=True
        )
        for result in jobs:
            if isinstance(result, tuple) and result[0].state in counts:
                counts[result[0].state] += 1
        for state, count in counts.items():
            UNFINISHED.labels(state=state.value).set(count)
        _last_refresh = time.monotonic()
