"""The attempt history a shard and a job's merges keep: what the dashboard's timeline draws."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zootrain.records import HISTORY_LIMIT, JobRecord, ShardRecord, TaskAttempt

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_a_claim_opens_an_attempt_and_its_outcome_closes_it() -> None:
    shard = ShardRecord(index=2)
    shard = shard.model_copy(update={"history": shard.claimed("w1", at(1))})
    (attempt,) = shard.history
    assert (attempt.worker, attempt.claimed_at, attempt.ended_at) == ("w1", at(1), None)
    shard = shard.model_copy(update={"history": shard.ended("failed", at(3), "ValueError: x")})
    assert shard.history[0].outcome == "failed" and shard.history[0].error == "ValueError: x"
    assert shard.history[0].ended_at == at(3)
    shard = shard.model_copy(update={"history": shard.claimed("w2", at(5))})
    shard = shard.model_copy(update={"history": shard.ended("done", at(9))})
    assert [(a.worker, a.outcome) for a in shard.history] == [("w1", "failed"), ("w2", "done")]
    assert ShardRecord.load(shard.dump()).history == shard.history  # kept in the znode's JSON


def test_a_reclaim_ends_the_attempt_of_a_worker_that_wrote_no_outcome_as_lost() -> None:
    history = TaskAttempt.claimed([], "dead", at(0))
    history = TaskAttempt.claimed(history, "alive", at(20))
    assert [(a.worker, a.outcome, a.ended_at) for a in history] == [
        ("dead", "lost", at(20)),
        ("alive", None, None),
    ]


def test_an_ended_attempt_is_not_ended_again() -> None:
    history = TaskAttempt.ended(TaskAttempt.claimed([], "w", at(0)), "done", at(1))
    assert TaskAttempt.ended(history, "cancelled", at(2)) == history
    assert TaskAttempt.ended([], "done", at(1)) == []


def test_the_history_is_bounded() -> None:
    history: list[TaskAttempt] = []
    for i in range(HISTORY_LIMIT + 5):
        history = TaskAttempt.ended(
            TaskAttempt.claimed(history, f"w{i}", at(i)), "handed_back", at(i)
        )
    assert len(history) == HISTORY_LIMIT
    assert history[-1].worker == f"w{HISTORY_LIMIT + 4}"


def test_records_written_before_the_history_existed_still_load() -> None:
    old_shard = b'{"index": 0, "state": "done", "attempts": 1, "worker": "w"}'
    assert ShardRecord.load(old_shard).history == []
    spec = '{"model_name": "m", "algorithm": "random_forest_classifier", '
    spec += '"dataset": {"kind": "builtin", "name": "iris"}}'
    old_job = f'{{"id": "0123456789abcdef0123", "spec": {spec}, "created_at": "{T0.isoformat()}", '
    old_job += f'"updated_at": "{T0.isoformat()}"}}'
    assert JobRecord.load(old_job.encode()).merges == []
