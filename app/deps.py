"""Per-process singletons of the job service, reached from request handlers."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from fastapi import Request

from app.auth import Gate
from app.events import EventHub
from app.limits import StreamSlots
from app.pool import ChildPool
from app.upload_check import TableChecker
from zootrain.acl import warn_if_open
from zootrain.artifacts import ArtifactStore
from zootrain.group_commit import GroupCommit
from zootrain.liveconfig import ConfigWatch, LiveSettings
from zootrain.paths import Paths
from zootrain.queue import JobQueue
from zootrain.registry import Registry
from zootrain.settings import Settings
from zootrain.tokenstore import TokenWatch
from zootrain.watched import WatchedRecords
from zootrain.zk import ZooKeeper

log = logging.getLogger("zootrain.api")


@dataclass
class Services:
    settings: Settings
    zk: ZooKeeper
    paths: Paths
    queue: JobQueue
    registry: Registry
    store: ArtifactStore
    gate: Gate
    prepared: bool = False  # the base znodes exist: submits can be recorded
    pool: ChildPool = field(init=False)
    events: EventHub = field(init=False)
    tables: TableChecker = field(init=False)
    streams: StreamSlots = field(init=False)
    token_watch: TokenWatch | None = field(init=False)
    live: LiveSettings = field(init=False)
    config_watch: ConfigWatch = field(init=False)

    def __post_init__(self) -> None:
        self.pool = ChildPool(
            self.settings.predict_processes,
            artifacts=self.settings.artifacts,
            cache_bytes=self.settings.model_cache_bytes,
            batch_rows=self.settings.predict_batch_rows,
        )
        self.events = EventHub(self.zk, self.paths)
        self.tables = TableChecker(self.settings.upload_check_memory_bytes)
        self.streams = StreamSlots(self.settings.max_event_streams)
        self.token_watch = None
        if self.gate.enabled:
            self.token_watch = TokenWatch(self.zk, self.paths.tokens, self.gate.apply)
        # The live configuration (PATCH /v1/config) changes self.settings in place.
        self.live = LiveSettings(self.settings)
        self.config_watch = ConfigWatch(self.zk, self.paths, self.live)
        self.config_watch.listeners.append(self._config_changed)

    def _config_changed(self, changed: set[str]) -> None:
        # The rate limiter copied its two settings at start-up: hand it the new ones.
        self.gate.submits.rate = self.settings.submit_rate
        self.gate.submits.burst = self.settings.submit_burst

    @classmethod
    def build(cls, settings: Settings) -> Services:
        # First: a token configuration that cannot be used stops the service before it serves.
        gate = Gate.from_settings(settings)
        warn_if_open(settings.zk_auth, log)
        zk = ZooKeeper(
            settings.zk_hosts,
            session_timeout=settings.zk_session_timeout,
            digest=settings.zk_auth,
        )
        paths = Paths(settings.zk_root)
        return cls(
            settings=settings,
            zk=zk,
            paths=paths,
            queue=JobQueue(zk, paths, group=_group_commit(zk, settings)),
            registry=Registry(zk, paths, _serving_cache(zk, settings)),
            store=ArtifactStore(settings.artifacts),
            gate=gate,
        )


def _group_commit(zk: ZooKeeper, settings: Settings) -> GroupCommit | None:
    # 1: each submit's multi is sent on its own, straight through the bridge, as many in
    # flight as there are requests (no group's in-flight bound either).
    size = settings.submit_group_commit
    return GroupCommit(zk, max_members=size) if size > 1 else None


def _serving_cache(zk: ZooKeeper, settings: Settings) -> WatchedRecords | None:
    entries = settings.serving_cache_entries
    return WatchedRecords(zk, entries) if entries > 0 else None


async def services(request: Request) -> Services:
    # async: a plain function would be run in the thread pool on every request.
    found: Services = request.app.state.services
    return found
