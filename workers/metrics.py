"""Prometheus metrics of a worker, served on ZOOTRAIN_METRICS_PORT when it is set."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

SHARDS = Counter("zootrain_shards_total", "Shards trained, by outcome", ["algorithm", "outcome"])
TRAIN_SECONDS = Histogram(
    "zootrain_shard_training_seconds", "Time to fit one shard", ["algorithm"], buckets=_SECONDS
)
CLAIM_LATENCY = Histogram(
    "zootrain_claim_latency_seconds",
    "From a job's submit to one of its shards' claim (first attempts only)",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
MERGES = Counter("zootrain_merges_total", "Merges, by outcome", ["outcome"])
RETRIES = Counter("zootrain_shard_retries_total", "Shard attempts that failed and will retry")
CANCELLED = Counter(
    "zootrain_shards_stopped_total", "Running shards stopped before the end", ["reason"]
)
FENCED = Counter(
    "zootrain_fenced_writes_total",
    "Outcomes of finished work (a shard's result or retry, a merge's retry, a publish) that "
    "ZooKeeper refused on their version: the record moved on since this worker's claim "
    "(another worker re-claimed it after this one's session expired, or the job was cancelled)",
    ["write"],
)
FINISHED = Counter("zootrain_jobs_finished_total", "Jobs this worker finished", ["state"])
BUSY = Gauge("zootrain_worker_busy", "Shards and merges this worker is working on")
SWEEPS = Counter("zootrain_housekeeping_sweeps_total", "Housekeeping sweeps completed")
UNREADABLE = Gauge(
    "zootrain_unreadable_records",
    "Records the latest housekeeping sweep found that do not parse (left alone), by kind",
    ["kind"],
)
COLLECTIONS = Counter(
    "zootrain_artifact_collections_total", "Garbage collections of the artifact store completed"
)
COLLECTED_FILES = Counter(
    "zootrain_artifacts_collected_total", "Unreferenced files removed from the artifact store"
)
COLLECTED_BYTES = Counter(
    "zootrain_artifacts_collected_bytes_total", "Bytes of unreferenced files removed"
)
