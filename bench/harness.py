"""What every benchmark runs in: the run's context and options, its API token, and the stack
(a real ZooKeeper server, the job service and workers as real processes).

Processes are the real ones (``uvicorn app.main:app``, ``python -m workers``) started by the
shared test kit (testkit/); ZooKeeper is a real server on a free loopback port, a fresh
one for each benchmark so that one benchmark's znodes never slow the next one down.
"""

from __future__ import annotations

import contextlib
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from kazoo.client import KazooClient

from testkit.stack import Process, Stack, wait_for
from testkit.zkserver import ZooKeeperCluster, free_port
from zootrain.auth import config_entry, new_token
from zootrain.paths import IDEMPOTENCY_BUCKETS, Paths

ROOT = Path(__file__).resolve().parents[1]
TERMINAL = ("succeeded", "failed", "cancelled")

# One admin token per run: the job service gets only its hash (ZOOTRAIN_TOKENS), every request
# of the benchmarks carries it.
TOKEN_NAME = "bench"
TOKEN = new_token()
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def auth_env() -> dict[str, str]:
    """The job service's settings for the run's token, with no per-token submit rate limit
    (the benchmarks measure throughput)."""
    return {
        "ZOOTRAIN_TOKENS": config_entry(TOKEN_NAME, TOKEN, ["admin"]),
        "ZOOTRAIN_SUBMIT_RATE": "0",
    }


def api_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client for the job service that sends the run's token on every request."""
    kwargs.setdefault("timeout", 60)
    return httpx.AsyncClient(base_url=url, headers=AUTH, **kwargs)


@dataclass
class Context:
    quick: bool
    workdir: Path
    profile: bool = False
    verbose: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    # Results one benchmark leaves for another (dispatch's and e2e's jobs, for overhead).
    shared: dict[str, Any] = field(default_factory=dict)
    profiles: list[str] = field(default_factory=list)

    def command(self, name: str) -> str:
        return f"python -m bench --only {name}" + (" --quick" if self.quick else "")

    def log(self, message: str) -> None:
        if self.verbose:
            stamp = time.strftime("%H:%M:%S")
            print(f"[bench {stamp}] {message}", file=sys.stderr, flush=True)

    def directory(self, name: str) -> Path:
        path = self.workdir / f"{name}-{uuid.uuid4().hex[:6]}"
        path.mkdir(parents=True)
        return path

    @contextlib.contextmanager
    def zookeeper(self, name: str) -> Iterator[ZooKeeperCluster]:
        """A fresh standalone ZooKeeper server for one benchmark."""
        cluster = ZooKeeperCluster(self.directory(f"zk-{name}"), size=1)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()

    @contextlib.contextmanager
    def stack(self, name: str, zk: ZooKeeperCluster, **extra: str) -> Iterator[BenchStack]:
        directory = self.directory(name)
        env = settings_env(zk, f"/bench-{name}-{uuid.uuid4().hex[:6]}", directory, **extra)
        stack = BenchStack(directory, env)
        try:
            yield stack
        finally:
            stack.stop()


def settings_env(zk: ZooKeeperCluster, root: str, directory: Path, **extra: str) -> dict[str, str]:
    env = {
        "ZOOTRAIN_ZK_HOSTS": zk.hosts,
        "ZOOTRAIN_ZK_ROOT": root,
        "ZOOTRAIN_ARTIFACTS": str(directory / "artifacts"),
        "ZOOTRAIN_ZK_SESSION_TIMEOUT": "10",
        # The benchmarks fill the queue far past the default backpressure limit.
        "ZOOTRAIN_MAX_QUEUE": "1000000",
        # Sweeps walk the whole queue: keep them out of the measurements.
        "ZOOTRAIN_HOUSEKEEPING_INTERVAL": "3600",
        **auth_env(),
    }
    env.update(extra)
    return env


class BenchStack(Stack):
    """testkit.stack.Stack, plus a job service with ``uvicorn --workers N``."""

    @property
    def root(self) -> str:
        return self.settings["ZOOTRAIN_ZK_ROOT"]

    @property
    def paths(self) -> Paths:
        return Paths(self.root)

    @property
    def url(self) -> str:
        assert self.api_url is not None, "start_api_server() first"
        return self.api_url

    def start_api_server(self, workers: int = 1, *extra: str) -> Process:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "app.main:app"]
        argv += ["--host", "127.0.0.1", "--port", str(port), *extra]
        if workers > 1:
            argv += ["--workers", str(workers)]
        name = "api" if workers == 1 else f"api-x{workers}"
        process = self._spawn(f"{name}-{port}", argv)
        self.api_url = f"http://127.0.0.1:{port}"
        url = self.api_url

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: ready() or not process.alive(), 90, "the job service")
        assert process.alive(), process.output()
        self.wait_layout()
        return process

    def workers(self) -> list[Process]:
        return [p for p in self.processes if p.name.startswith("worker") and p.alive()]

    def restart_workers(self) -> list[Process]:
        """Replace every live worker with a fresh process (same settings)."""
        count = len(self.workers())
        for process in self.workers():
            process.stop(20)
        return [self.start_worker("worker") for _ in range(count)]

    def wait_layout(self) -> None:
        """/readyz says "connected": the base znodes are created just after."""
        paths = self.paths
        client = KazooClient(hosts=self.settings["ZOOTRAIN_ZK_HOSTS"])
        client.start(30)
        try:

            def ready() -> bool:
                if not all(client.exists(p) for p in paths.bases):
                    return False
                return len(client.get_children(paths.idempotency)) >= len(IDEMPOTENCY_BUCKETS)

            wait_for(ready, 60, "the base znodes")
        finally:
            client.stop()
            client.close()
