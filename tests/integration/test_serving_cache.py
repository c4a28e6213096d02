"""Predictions resolve their version from records kept under watches (zootrain.watched), on a
real ZooKeeper: two sessions stand for two job-service processes, ``served`` (with the cache)
and ``other`` (making changes). Every wait is for the watch's own event, never a sleep."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

from testkit.auth import ADMIN_TOKEN, READ_TOKEN, bearer
from testkit.stack import Stack, wait_for
from testkit.zkserver import ZooKeeperCluster
from zootrain.artifacts import ArtifactStore
from zootrain.errors import Gone, NotFound
from zootrain.ml import modelfile
from zootrain.paths import Paths
from zootrain.records import ModelRecord, VersionRecord
from zootrain.registry import Registry
from zootrain.watched import WatchedRecords
from zootrain.zk import KazooState, ZooKeeper

pytestmark = pytest.mark.integration

NAME = "cached"


def version(number: int) -> VersionRecord:
    return VersionRecord(
        model=NAME,
        version=number,
        job_id=f"job-{number}",
        algorithm="random_forest_classifier",
        task="classification",
        shards=1,
        artifact=f"file://artifact-{number}",
        sha256=f"{number:064x}",
        size=1,
        n_features=4,
        metrics={},
        shard_metrics=[],
        train_rows=1,
        test_rows=1,
        created_at=datetime.now(UTC),
    )


def publish(kazoo: KazooClient, paths: Paths, numbers: list[int], champion: int) -> None:
    kazoo.ensure_path(paths.models)
    kazoo.create(paths.model(NAME), ModelRecord(aliases={"champion": champion}).dump())
    for number in numbers:
        kazoo.create(paths.version(NAME, number), version(number).dump())


class Reads:
    """ZooKeeper reads this session sends, counted where the bridge hands them to kazoo."""

    def __init__(self, zk: ZooKeeper) -> None:
        self.count = 0
        for name in ("get_async", "get_children_async", "exists_async"):
            original = getattr(zk.client, name)
            setattr(zk.client, name, self._counting(original))

    def _counting(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        return call


async def dropped(cache: WatchedRecords, path: str, change: Callable[[], Awaitable[Any]]) -> None:
    """Make ``change`` and wait for the watch that drops ``path`` from ``cache``."""
    heard = asyncio.Event()

    def hear(dropped_path: str) -> None:
        if dropped_path in (path, ""):
            heard.set()

    cache.add_listener(hear)
    await change()
    await asyncio.wait_for(heard.wait(), 30)


def scenario(
    zookeeper: ZooKeeperCluster,
    body: Callable[[Registry, WatchedRecords, Registry, Reads], Awaitable[None]],
) -> None:
    async def main() -> None:
        served_zk = ZooKeeper(zookeeper.hosts, session_timeout=4)
        other_zk = ZooKeeper(zookeeper.hosts, session_timeout=4)
        await served_zk.start()
        await other_zk.start()
        try:
            cache = WatchedRecords(served_zk)
            served = Registry(served_zk, PATHS, cache)
            other = Registry(other_zk, PATHS)
            await body(served, cache, other, Reads(served_zk))
        finally:
            await served_zk.stop()
            await other_zk.stop()

    asyncio.run(asyncio.wait_for(main(), 120))


PATHS = Paths("/")  # replaced per test (a fresh root)


@pytest.fixture(autouse=True)
def fresh_root(zk_root: str, kazoo: KazooClient) -> None:
    global PATHS
    PATHS = Paths(zk_root)
    publish(kazoo, PATHS, [1, 2, 3], champion=2)


def test_repeated_predictions_make_no_zookeeper_reads(zookeeper: ZooKeeperCluster) -> None:
    async def body(served: Registry, cache: WatchedRecords, other: Registry, reads: Reads) -> None:
        assert (await served.serve(NAME))[0].version == 2
        assert (await served.serve(NAME, 3))[0].version == 3
        assert (await served.serve(NAME, None, "champion"))[0].version == 2
        first = reads.count
        assert first > 0
        for _round in range(50):
            assert (await served.serve(NAME))[0].version == 2
            assert (await served.serve(NAME, 3))[0].version == 3
        assert reads.count == first, "a known model and version went to ZooKeeper again"
        # Unknown versions are asked of ZooKeeper every time (nothing negative is kept).
        for _round in range(3):
            with pytest.raises(NotFound):
                await served.serve(NAME, 9)
        assert reads.count == first + 3

    scenario(zookeeper, body)


def test_an_alias_moved_by_another_process_is_served_once_the_watch_fires(
    zookeeper: ZooKeeperCluster,
) -> None:
    async def body(served: Registry, cache: WatchedRecords, other: Registry, _: Reads) -> None:
        assert (await served.serve(NAME))[0].version == 2

        async def move() -> None:
            await other.set_alias(NAME, "champion", 3, if_match=None, by="test")

        await dropped(cache, PATHS.model(NAME), move)
        record, alias = await served.serve(NAME)
        assert (record.version, alias) == (3, "champion")

    scenario(zookeeper, body)


def test_a_version_deleted_through_another_process_answers_gone(
    zookeeper: ZooKeeperCluster,
) -> None:
    async def body(served: Registry, cache: WatchedRecords, other: Registry, _: Reads) -> None:
        assert (await served.serve(NAME, 3))[0].version == 3

        async def delete() -> None:
            await other.delete(NAME, 3)

        await dropped(cache, PATHS.version(NAME, 3), delete)
        with pytest.raises(Gone):
            await served.serve(NAME, 3)

    scenario(zookeeper, body)


def test_this_process_reads_its_own_writes_at_once(zookeeper: ZooKeeperCluster) -> None:
    # No wait for any watch: the write's own return is enough.
    async def body(served: Registry, cache: WatchedRecords, _: Registry, reads: Reads) -> None:
        assert (await served.serve(NAME))[0].version == 2
        assert (await served.serve(NAME, 1))[0].version == 1
        await served.set_alias(NAME, "champion", 1, if_match=None, by="test")
        assert (await served.serve(NAME))[0].version == 1
        await served.delete(NAME, 1)
        with pytest.raises(Gone):
            await served.serve(NAME, 1)
        # The champion went with its version: the default is the latest left.
        record, alias = await served.serve(NAME)
        assert (record.version, alias) == (3, None)

    scenario(zookeeper, body)


def test_a_new_version_is_served_by_default_once_the_child_watch_fires(
    zookeeper: ZooKeeperCluster, kazoo: KazooClient
) -> None:
    async def body(served: Registry, cache: WatchedRecords, other: Registry, _: Reads) -> None:
        await served.remove_alias(NAME, "champion", if_match=None, by="test")
        assert (await served.serve(NAME))[0].version == 3  # the listing is kept now

        async def publish_four() -> None:
            kazoo.create(PATHS.version(NAME, 4), version(4).dump())

        await dropped(cache, PATHS.model(NAME), publish_four)
        assert (await served.serve(NAME))[0].version == 4

    scenario(zookeeper, body)


def test_the_cache_is_emptied_when_the_session_expires(zookeeper: ZooKeeperCluster) -> None:
    async def body(served: Registry, cache: WatchedRecords, other: Registry, reads: Reads) -> None:
        zk = served.zk
        assert (await served.serve(NAME))[0].version == 2
        assert len(cache) > 0
        lost = asyncio.Event()

        def hear(state: KazooState) -> None:
            if state == KazooState.LOST:
                lost.set()

        zk.add_state_listener(hear)
        # Another client takes the session over and closes it: the server expires it.
        session_id, password = zk.client.client_id
        thief = KazooClient(hosts=zookeeper.hosts, client_id=(session_id, password))
        await asyncio.to_thread(thief.start, 30)
        await asyncio.to_thread(thief.stop)
        thief.close()
        await asyncio.wait_for(lost.wait(), 30)
        assert len(cache) == 0
        # Changed while the old session's watches were gone: the new session reads it afresh.
        await other.set_alias(NAME, "champion", 1, if_match=None, by="test")
        await zk.wait_connected(30)
        assert (await served.serve(NAME))[0].version == 1

    scenario(zookeeper, body)


def test_two_job_services_a_version_deleted_through_one_answers_gone_from_the_other(
    stack: Stack, kazoo: KazooClient
) -> None:
    """Over HTTP, with two job-service processes: the one that deletes answers 410 at once; the
    other, which had the record kept, answers 410 once its watch is delivered (this side of the
    test can only wait for that from outside: without the watch it would serve on forever)."""
    x, y = load_iris(return_X_y=True)
    data = modelfile.dumps(RandomForestClassifier(n_estimators=2, random_state=0).fit(x, y))
    uri, sha256 = ArtifactStore(stack.settings["ZOOTRAIN_ARTIFACTS"]).put(data)
    paths = Paths(stack.settings["ZOOTRAIN_ZK_ROOT"])
    kazoo.ensure_path(paths.model("served"))
    for number in (1, 2):
        record = version(number).model_copy(
            update={
                "model": "served",
                "artifact": uri,
                "sha256": sha256,
                "size": len(data),
                "classes": [0, 1, 2],
            }
        )
        kazoo.create(paths.version("served", number), record.dump())
    stack.start_api()
    serving = stack.api_url or ""
    stack.start_api()
    deleting = stack.api_url or ""
    body = {"instances": [[5.1, 3.5, 1.4, 0.2]], "version": 2}
    with (
        httpx.Client(base_url=serving, headers=bearer(READ_TOKEN), timeout=30) as a,
        httpx.Client(base_url=deleting, headers=bearer(READ_TOKEN), timeout=30) as b,
    ):
        for client in (a, b):
            for _round in range(3):  # kept in both
                answer = client.post("/v1/models/served/predict", json=body)
                assert answer.status_code == 200, answer.text
        deleted = b.delete("/v1/models/served/versions/2", headers=bearer(ADMIN_TOKEN))
        assert deleted.status_code == 204, deleted.text
        assert b.post("/v1/models/served/predict", json=body).status_code == 410
        wait_for(
            lambda: a.post("/v1/models/served/predict", json=body).status_code == 410,
            30,
            "the other job service to hear of the delete",
        )
        assert a.post("/v1/models/served/predict", json={**body, "version": 1}).status_code == 200
