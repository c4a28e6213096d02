"""workers/shard_groups.py without a server: which jobs are grouped, which shards a group claim
takes, how members share one child, and the child function that trains a group."""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

import pytest

from workers import processes, shard_groups, train_child
from workers.claims import Claim
from workers.worker import _merges_next, _slots
from zootrain.records import JobRecord, ShardRecord, ShardState, new_job_id, utcnow
from zootrain.spec import JobSpec
from zootrain.zk import ZnodeStat

LIMIT = 10_000


def job(**overrides: Any) -> JobRecord:
    raw: dict[str, Any] = {
        "model_name": "m",
        "algorithm": "random_forest_classifier",
        "params": {"n_estimators": 3, "max_depth": 4},
        "dataset": {"kind": "builtin", "name": "iris"},
        "shards": 2,
    }
    raw.update(overrides)
    now = utcnow()
    return JobRecord(
        id=new_job_id(), spec=JobSpec.model_validate(raw), owner="t", created_at=now, updated_at=now
    )


def stat(version: int = 0) -> ZnodeStat:
    return ZnodeStat(0, 0, 0, 0, version, 0, 0, 0, 0, 0, 0)


def test_small_jobs_are_grouped_and_the_rest_are_not() -> None:
    assert shard_groups.shard_work(job()) == 150 * 4 * 3
    assert shard_groups.groupable(job(), LIMIT)
    # More trees, a bigger dataset, or a limit of 0: alone.
    assert not shard_groups.groupable(job(params={"n_estimators": 20}), LIMIT)
    assert not shard_groups.groupable(job(dataset={"kind": "builtin", "name": "digits"}), LIMIT)
    assert not shard_groups.groupable(job(), 0)
    # One shard: nothing to group. A baseline (a fit on every row) or rounds: never.
    assert not shard_groups.groupable(job(shards=1), LIMIT)
    assert not shard_groups.groupable(job(baseline=True), LIMIT)
    # A family without trees counts its cells once; one trained in rounds is never grouped
    # (its shards are held together already, round after round).
    assert shard_groups.shard_work(job(algorithm="gaussian_nb", params={})) == 150 * 4
    assert shard_groups.shard_work(job(algorithm="logistic_regression", params={})) is None
    synthetic = job(dataset={"kind": "synthetic", "task": "classification", "n_samples": 500})
    assert shard_groups.shard_work(synthetic) == 500 * 20 * 3


def test_a_group_claim_takes_the_pending_due_shards_with_attempts_left() -> None:
    shards = [
        (ShardRecord(index=0), stat()),
        (ShardRecord(index=1, state=ShardState.running, attempts=1), stat(1)),
        (ShardRecord(index=2, not_before=2000.0), stat()),  # not due yet
        (ShardRecord(index=3, attempts=3), stat()),  # out of attempts
        (ShardRecord(index=4), stat()),
        (ShardRecord(index=5), stat()),  # one of our own claims holds it
        (ShardRecord(index=6, state=ShardState.done), stat()),
    ]
    picked = shard_groups.pick(shards, 1000.0, 3, lambda index: index == 5)
    assert [s.index for s, _ in picked] == [0, 4]
    many = [(ShardRecord(index=i), stat()) for i in range(40)]
    assert len(shard_groups.pick(many, 0.0, 3, lambda _: False)) == shard_groups.MAX_GROUP


def group_of(count: int) -> shard_groups.ShardGroup:
    record = job(shards=count)
    members = [
        Claim(job=record, lock=f"l{i}", index=i, shard=ShardRecord(index=i)) for i in range(count)
    ]
    group = shard_groups.ShardGroup(members)
    for member in members:
        member.group = group
    return group


def test_a_group_takes_one_slot() -> None:
    group = group_of(3)
    alone = Claim(job=job(), lock="x", index=0)
    assert _slots(group.members) == 1
    assert _slots([*group.members, alone]) == 2


def test_members_read_their_own_results_and_failures() -> None:
    asyncio.run(_members_read_their_own_results_and_failures())


async def _members_read_their_own_results_and_failures() -> None:
    group = group_of(2)
    answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    group.start(lambda: answer)
    first = asyncio.ensure_future(group.result(group.members[0], 5.0))
    second = asyncio.ensure_future(group.result(group.members[1], 5.0))
    answer.set_result({"results": {0: {"artifact": "a"}, 1: {"failed": "ValueError: no"}}})
    assert await first == {"artifact": "a"}
    with pytest.raises(processes.ChildFailed, match="ValueError: no"):
        await second


def test_the_child_is_stopped_only_when_every_member_has_stopped_waiting() -> None:
    asyncio.run(_the_child_is_stopped_only_when_every_member_has_stopped_waiting())


async def _the_child_is_stopped_only_when_every_member_has_stopped_waiting() -> None:
    group = group_of(2)
    answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    group.start(lambda: answer)
    waits = [asyncio.ensure_future(group.result(m, 5.0)) for m in group.members]
    await asyncio.sleep(0)
    waits[0].cancel()
    await asyncio.sleep(0)
    assert not answer.cancelled()  # the other member still waits on it
    waits[1].cancel()
    await asyncio.sleep(0)
    assert answer.cancelled()


def test_a_groups_time_limit_is_reported_as_each_tasks_own() -> None:
    asyncio.run(_a_groups_time_limit_is_reported_as_each_tasks_own())


async def _a_groups_time_limit_is_reported_as_each_tasks_own() -> None:
    group = group_of(2)
    answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    group.start(lambda: answer)
    waiting = asyncio.ensure_future(group.result(group.members[0], 5.0))
    answer.set_exception(processes.TimeLimitExceeded(10.0))
    with pytest.raises(processes.TimeLimitExceeded, match="time limit of 5 s exceeded"):
        await waiting


def test_the_last_member_to_settle_is_known() -> None:
    group = group_of(3)
    assert [group.settled() for _ in range(3)] == [False, False, True]


def test_the_child_function_trains_each_shard_and_keeps_the_models_for_the_merge() -> None:
    spec = job(partition="random").spec.model_dump(mode="json")  # as the submit resolved it
    store = "file://" + tempfile.mkdtemp(prefix="groups-")
    payload = {"spec": spec, "artifacts": store, "dataset_source": None, "indices": [0, 1]}
    results = train_child.train_shards(payload)["results"]
    assert set(results) == {0, 1}
    alone = train_child.train_shard({**payload, "index": 1})
    # Each shard as it trains alone (its own rows and seed), and still in memory for the merge.
    assert (results[1]["rows"], results[1]["metrics"]) == (alone["rows"], alone["metrics"])
    assert results[1]["sha256"] != results[0]["sha256"]
    assert {results[0]["sha256"], results[1]["sha256"]} <= set(train_child._WARM.models)


def test_one_shards_failure_in_the_child_is_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    def train(payload: dict[str, Any]) -> dict[str, Any]:
        if payload["index"] == 1:
            raise ValueError("shard 1 is broken")
        return {"index": payload["index"]}

    monkeypatch.setattr(train_child, "train_shard", train)
    results = train_child.train_shards({"indices": [0, 1, 2]})["results"]
    assert results[0] == {"index": 0} and results[2] == {"index": 2}
    assert results[1]["failed"] == "ValueError: shard 1 is broken"
    assert "shard 1 is broken" in results[1]["trace"]


def test_a_group_holding_its_whole_job_keeps_its_slot_while_it_settles() -> None:
    """Its last member claims the job's merge, which takes the slot next: a scan in between
    would only read the queue for the merge to take the slot."""
    whole = group_of(2)
    assert whole.whole_job
    for member in whole.members:
        member.settling = True
    assert all(_merges_next(m) for m in whole.members)
    # A group of some of its job's shards (the rest were claimed elsewhere): the merge may be
    # another worker's, and a settling member's slot is free as any claim's.
    part = shard_groups.ShardGroup(
        [Claim(job=job(shards=3), lock=f"l{i}", index=i) for i in range(2)]
    )
    for member in part.members:
        member.group = part
    assert not part.whole_job and not any(_merges_next(m) for m in part.members)
    assert not _merges_next(Claim(job=job(), lock="x", index=0))
