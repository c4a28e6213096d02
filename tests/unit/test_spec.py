"""Job spec validation: everything is checked before anything is written (no server needed)."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from pydantic import ValidationError

from zootrain import records
from zootrain.ml.validation import validate_submission
from zootrain.records import JobRecord, JobSpec, new_job_id, utcnow

GOOD: dict[str, Any] = {
    "model_name": "iris-forest",
    "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 10},
    "dataset": {"kind": "builtin", "name": "iris"},
    "shards": 4,
}


def errors(**changes: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        validate_submission(JobSpec.model_validate({**GOOD, **changes}))
    return str(caught.value)


def test_good_spec_gets_defaults() -> None:
    spec = JobSpec.model_validate(GOOD)
    assert (spec.partition, spec.test_size, spec.max_attempts, spec.priority) == (
        "auto",
        0.2,
        3,
        5,
    )


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"model_name": "Bad Name"}, "model_name"),
        ({"model_name": "-x"}, "model_name"),
        ({"algorithm": "gradient_magic"}, "gradient_magic"),
        ({"params": {"n_estimatorz": 3}}, "n_estimatorz"),
        ({"params": {"n_estimators": -1}}, "n_estimators"),
        ({"params": {"n_jobs": 4}}, "n_jobs"),
        ({"dataset": {"kind": "builtin", "name": "mnist"}}, "mnist"),
        ({"dataset": {"kind": "s3"}}, "kind"),
        ({"shards": 0}, "shards"),
        ({"shards": 257}, "shards"),
        ({"shards": 200}, "exceeds"),
        ({"partition": "zigzag"}, "partition"),
        ({"test_size": 1.0}, "test_size"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"priority": 10}, "priority"),
        ({"surprise": 1}, "surprise"),
        ({"shards": "4"}, "shards"),
        ({"random_state": False}, "random_state"),  # a bool is no seed (JSON has both)
        (
            {
                "algorithm": "multinomial_nb",
                "params": {},
                "dataset": {"kind": "synthetic", "task": "classification", "n_samples": 100},
            },
            "non-negative",
        ),
        ({"shards": True}, "shards"),
        ({"dataset": {"kind": "builtin", "name": "diabetes"}}, "regression"),
    ],
)
def test_bad_spec_names_the_problem(changes: dict[str, Any], named: str) -> None:
    assert named in errors(**changes)


def test_fingerprint_follows_meaning_not_spelling() -> None:
    a = JobSpec.model_validate(GOOD)
    b = JobSpec.model_validate({**GOOD, "partition": "auto"})  # the default, spelled out
    c = JobSpec.model_validate({**GOOD, "shards": 3})
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_job_ids_sort_by_time_and_are_unique() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_job_id() for _ in range(200)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 200
    assert all(re.fullmatch(r"[0-9a-f]{20}", i) for i in ids), ids
    # The first 12 hex digits are the creation time in milliseconds ...
    stamps = [int(i[:12], 16) for i in ids]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= after


def test_ids_of_different_milliseconds_sort_by_time_whatever_their_random_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # ... so ids made in later milliseconds sort later, whatever the random suffix says.
    clock = iter(range(1_700_000_000_000, 1_700_000_000_000 + 300))
    monkeypatch.setattr(records.time, "time_ns", lambda: next(clock) * 1_000_000)
    ids = [new_job_id() for _ in range(300)]
    assert ids == sorted(ids)
    assert [int(i[:12], 16) for i in ids] == list(range(1_700_000_000_000, 1_700_000_000_300))


def test_job_record_roundtrip() -> None:
    now = utcnow()
    job = JobRecord(
        id=new_job_id(), spec=JobSpec.model_validate(GOOD), created_at=now, updated_at=now
    )
    assert JobRecord.load(job.dump()) == job
