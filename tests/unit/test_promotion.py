"""Gated promotion's decision (workers/publishing.promotion_rule), given the merge's scores and
the model's aliases as the publishing multi finds them; and the score it compares."""

from __future__ import annotations

from typing import Any

from workers.publishing import promotion_rule
from workers.train_child import gate_score
from zootrain.records import JobRecord, JobSpec, ModelRecord, utcnow


def job(publish: dict[str, Any] | None) -> JobRecord:
    spec = JobSpec.model_validate(
        {
            "model_name": "m",
            "algorithm": "random_forest_classifier",
            "dataset": {"kind": "builtin", "name": "iris"},
            "publish": publish,
        }
    )
    return JobRecord(id="0" * 20, spec=spec, created_at=utcnow(), updated_at=utcnow())


GATED = {"alias": "champion", "if_better": True}


def decide(publish: dict[str, Any] | None, gate: dict[str, Any] | None, aliases: dict[str, int]):
    rule = promotion_rule(job(publish), {"gate": gate} if gate is not None else {})
    assert rule is not None
    return rule(ModelRecord(aliases=aliases))


def test_no_publish_no_rule() -> None:
    assert promotion_rule(job(None), {}) is None


def test_better_or_equal_takes_the_alias_worse_does_not() -> None:
    scores = {"metric": "accuracy", "holder_version": 3, "holder_score": 0.9}
    taken = decide(GATED, {**scores, "score": 0.9}, {"champion": 3})
    assert taken.promoted and taken.holder_score == 0.9 and taken.score == 0.9
    assert "0.9 >= 0.9 of version 3" in taken.reason
    refused = decide(GATED, {**scores, "score": 0.85}, {"champion": 3})
    assert not refused.promoted and refused.holder_version == 3
    assert "0.85 < 0.9" in refused.reason


def test_no_holder_takes_it_and_if_better_false_always_does() -> None:
    first = decide(GATED, None, {"staging": 1})
    assert first.promoted and "no 'champion' alias" in first.reason
    forced = decide({"alias": "champion"}, None, {"champion": 3})
    assert forced.promoted and not forced.if_better


def test_a_moved_alias_or_an_unscorable_holder_refuses() -> None:
    scores = {"metric": "r2", "score": 0.99, "holder_version": 3, "holder_score": 0.1}
    moved = decide(GATED, scores, {"champion": 4})
    assert not moved.promoted and "moved to version 4" in moved.reason
    # Compared with no holder (none when the merge began), but one appeared meanwhile.
    appeared = decide(GATED, {"metric": "r2", "score": 0.99}, {"champion": 4})
    assert not appeared.promoted and "no holder" in appeared.reason
    broken = decide(
        GATED, {"metric": "r2", "score": 0.9, "holder_version": 3, "holder_error": "X has 4 "
        "features, but the model expects 8"}, {"champion": 3}
    )  # fmt: skip
    assert not broken.promoted and "could not be scored" in broken.reason


def test_the_compared_score_is_higher_better_per_task() -> None:
    assert gate_score({"accuracy": 0.9, "f1_macro": 0.8}, "classification") == ("accuracy", 0.9)
    assert gate_score({"r2": 0.7, "rmse": 3.0}, "regression") == ("r2", 0.7)
    assert gate_score({"inertia": 12.0, "adjusted_rand": 0.4}, "classification") == (
        "adjusted_rand",
        0.4,
    )
    assert gate_score({"inertia": 12.0}, "regression") == ("-inertia", -12.0)
    assert gate_score({}, "regression") == ("r2", None)
