"""Configuration, read from ``ZOOTRAIN_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import ByteSize, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from zootrain.ml.cost import Ceilings
from zootrain.shard_plan import DEFAULT_SHARD_MEMORY
from zootrain.spec import MAX_ATTEMPTS, MAX_SYNTHETIC_VALUES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ZOOTRAIN_", extra="ignore")

    zk_hosts: str = Field(
        "127.0.0.1:2181",
        description="ZooKeeper connection string: comma-separated host:port, one per node.",
    )
    zk_root: str = Field("/zootrain", pattern=r"^(/[A-Za-z0-9._-]+)+$")
    zk_auth: str | None = Field(
        None,
        pattern=r"^[^:\s]+:\S+$",
        description=(
            "user:password for ZooKeeper digest ACLs: every znode is created readable and "
            "writable by these credentials only"
        ),
        repr=False,
    )
    zk_session_timeout: float = Field(10.0, gt=1, le=120, description="seconds")
    zk_connect_timeout: float = Field(15.0, gt=0, description="seconds to wait at start-up")
    zk_request_timeout: float = Field(
        5.0,
        gt=0,
        le=300,
        description="seconds the job service waits for ZooKeeper while serving one request; "
        "past it the answer is 503 with Retry-After",
    )
    artifacts: str = Field(
        "var/artifacts",
        min_length=1,
        description="artifact store: a directory (a path or file:// URL) or s3://bucket/prefix "
        "(credentials, region and endpoint from the standard AWS_* variables or an instance "
        "profile)",
    )

    auth: Literal["on", "off"] = Field(
        "on",
        description="off: no token is asked for and every request may do anything (local "
        "development only; the job service says so loudly in its log)",
    )
    tokens: str | None = Field(
        None,
        description="API tokens, as name:sha256:scopes entries separated by spaces or newlines "
        "(zootrain token new prints one); scopes are read, submit, admin",
        repr=False,
    )
    tokens_file: Path | None = Field(
        None, description="a file of name:sha256:scopes entries, one per line, # comments"
    )
    submit_rate: float = Field(
        10.0, ge=0, description="submits per second allowed per token (0: unlimited)"
    )
    submit_burst: int = Field(50, ge=1, description="submits a token may make at once")
    submit_group_commit: int = Field(
        1,
        ge=1,
        le=1000,
        description="submits at most sent to ZooKeeper as one multi when they arrive together "
        "(group commit, off by default: see docs/performance.md); 1 sends each alone",
    )
    upload_rate: float = Field(
        1.0, ge=0, description="dataset uploads per second allowed per token (0: unlimited)"
    )
    upload_burst: int = Field(20, ge=1, description="uploads a token may make at once")
    upload_quota_bytes: int = Field(
        2_000_000_000,
        ge=1,
        description="bytes of uploaded datasets a token may keep stored; 413 past it",
    )
    upload_check_memory_bytes: int = Field(
        2_000_000_000,
        ge=100_000_000,
        description="memory (RSS) the child process that reads and checks an upload may use; "
        "it is stopped past it and the upload is refused with a 422",
    )
    max_event_streams: int = Field(
        16, ge=1, description="event streams one token may hold open in one job-service process"
    )
    model_cache_bytes: int = Field(
        1_000_000_000,
        ge=1,
        description="loaded models the job service keeps for predictions, by their file size "
        "(in all: its prediction processes share it out)",
    )
    predict_processes: int = Field(
        2,
        ge=1,
        le=64,
        description="child processes of the job service that hold loaded models and predict "
        "(and validate submits against scikit-learn): the service itself never loads it",
    )

    max_queue: int = Field(10_000, ge=1, description="unfinished jobs accepted before 429")
    max_shards: int = Field(256, ge=1, le=4096)
    max_trees: int = Field(
        50_000,
        ge=1,
        description="trees a job grows in all: shards x n_estimators, the baseline's, and a "
        "search's candidates x folds (plus the refit); 422 past it",
    )
    max_synthetic_cells: int = Field(
        20_000_000,
        ge=1,
        le=MAX_SYNTHETIC_VALUES,
        description="n_samples x n_features of a synthetic dataset (every training child "
        "generates it whole: 8 bytes a cell)",
    )
    max_attempts: int = Field(
        10, ge=1, le=MAX_ATTEMPTS, description="tries per shard a job may ask for (max_attempts)"
    )
    max_kmeans_work: int = Field(
        1_000_000, ge=1, description="k-means n_init x max_iter x n_clusters of one fit"
    )
    max_request_bytes: int = Field(1_000_000, ge=1024, description="largest accepted JSON body")
    max_predict_instances: int = Field(10_000, ge=1)
    max_upload_bytes: int = Field(
        200_000_000, ge=1, description="largest dataset file accepted by POST /v1/datasets"
    )
    max_dataset_rows: int = Field(5_000_000, ge=1, description="rows of an uploaded dataset")
    max_dataset_columns: int = Field(
        1_000, ge=1, le=10_000, description="columns of an uploaded dataset"
    )
    max_datasets: int = Field(10_000, ge=1, description="uploaded datasets kept at once")
    idempotency_retention: float = Field(
        86_400.0, gt=0, description="seconds an Idempotency-Key is remembered"
    )

    job_retention: float = Field(
        7 * 86_400.0, gt=0, description="seconds a finished job is kept before it is deleted"
    )
    max_finished_jobs: int = Field(
        10_000, ge=1, description="finished jobs kept at most; the oldest go first"
    )
    max_versions: int = Field(
        1_000, ge=1, description="versions kept per model; the oldest records go first"
    )
    housekeeping_interval: float = Field(
        30.0, gt=0, description="seconds between the elected housekeeper's sweeps"
    )
    artifact_gc_interval: float = Field(
        3600.0,
        gt=0,
        description="seconds between the housekeeper's collections of unreferenced artifacts",
    )
    artifact_gc_grace: float = Field(
        3600.0,
        ge=0,
        description="seconds an unreferenced artifact is kept after its last write (a record "
        "naming it may be on its way)",
    )

    metrics_port: int | None = Field(
        None, ge=1, le=65535, description="a worker serves Prometheus metrics on this port"
    )

    worker_id: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    worker_concurrency: int = Field(1, ge=1, le=64, description="shards a worker trains at once")
    worker_round_shards: int = Field(
        16,
        ge=0,
        le=256,
        description="shards of jobs training in rounds a worker holds at once, on top of "
        "worker_concurrency (their children wait between short rounds; a job's shards must "
        "all be held at once somewhere)",
    )
    worker_group_work: int = Field(
        10_000,
        ge=0,
        description="a job whose shards each hold at most this many dataset cells (rows x "
        "features) times trees (builtin and synthetic datasets) has its pending shards claimed "
        "together by one worker and trained one after another by one child: such shards train "
        "in milliseconds, and their claims, children and settles would cost more than the "
        "training (0: every shard claimed alone; see docs/design.md, Small jobs)",
    )
    worker_child_threads: int = Field(
        1,
        ge=0,
        le=256,
        description="threads a training child's native libraries (BLAS, OpenMP) may use "
        "(0: their own default, a thread per core in every child)",
    )
    worker_warm_children: int = Field(
        2,
        ge=0,
        le=64,
        description="training children a worker keeps waiting for its next task after one "
        "succeeded (0: a fresh child for every task, which exits once it has answered)",
    )
    worker_grace: float = Field(
        30.0, ge=0, description="seconds a stopping worker lets its running shard finish"
    )
    task_time_limit: float = Field(
        6 * 3600.0,
        gt=0,
        description="seconds one attempt of a task may run when its job sets no time_limit",
    )
    task_memory_limit: ByteSize | None = Field(
        None,
        gt=0,
        description="address-space ceiling (RLIMIT_AS) of each training process: bytes, or a "
        "size such as 2GiB; it counts what the process inherits (about 0.7 GB of loaded "
        "libraries). Default: the machine's memory divided by ZOOTRAIN_WORKER_CONCURRENCY",
    )
    retry_backoff: float = Field(
        1.0, ge=0, description="seconds before a failed shard's first retry; doubles per attempt"
    )
    retry_backoff_max: float = Field(60.0, ge=0)
    shard_memory: ByteSize = Field(
        ByteSize(DEFAULT_SHARD_MEMORY),
        gt=0,
        description="the job service's budget for one shard's training rows, in bytes or a "
        "size such as 2GiB: a forest with partition 'auto' replicates every training row to "
        "every shard when they fit it (estimated at 12 bytes a value plus 16 a row) and takes "
        "random data shards otherwise",
    )
    predict_batch_rows: int = Field(
        1024,
        ge=0,
        description="rows one predict call of the job service's prediction processes stacks "
        "from concurrent requests for the same model (app.batching); 0: one call a request",
    )

    paused: bool = Field(
        False,
        description="workers claim no new work (what runs finishes; submits are still "
        "accepted); usually set live with PATCH /v1/config",
    )
    serving_cache_entries: int = Field(
        10_000,
        ge=0,
        description="model and version records the job service keeps under ZooKeeper watches "
        "to resolve predictions without a round trip (zootrain.watched); 0: read every time",
    )

    def ceilings(self) -> Ceilings:
        return Ceilings(
            max_trees=self.max_trees,
            max_synthetic_cells=self.max_synthetic_cells,
            max_attempts=self.max_attempts,
            max_kmeans_work=self.max_kmeans_work,
        )


@lru_cache
def get_settings() -> Settings:
    return Settings()
