"""The contract fuzz's verdict on accepted jobs that failed: a crash counts, a refusal does not."""

from __future__ import annotations

import json

from tests.contract.fuzzing import FailedJob, job_errors, replay_lines

SPEC = {"algorithm": "random_forest_classifier", "params": {"max_samples": 1e308}}


def _job(error: str, job_id: str = "j1") -> FailedJob:
    return FailedJob(job_id, error, SPEC)


def test_a_python_error_in_training_is_a_crash_submit_should_have_prevented() -> None:
    found = "shard 0 failed after 2 attempts: OverflowError: cannot convert float infinity"
    assert _job(found).crashed
    assert _job("merge failed after 1 attempts: MemoryError: Unable to allocate 6.94 EiB").crashed


def test_refusals_by_the_estimator_and_the_run_s_own_doing_do_not_count() -> None:
    for error in (
        "shard 1 failed after 2 attempts: ValueError: Floating-point under-/overflow occurred",
        "shard 0 failed after 2 attempts: TaskTimeLimit: the attempt ran past 60 s",
        "shard 0 failed after 2 attempts: ChildDied: the training child was killed",
        "",
    ):
        assert not _job(error).crashed, error


def test_failed_jobs_are_counted_and_their_specs_printed_to_replay() -> None:
    error = "shard 0 failed after 2 attempts: OverflowError: cannot convert float infinity"
    failed = [_job(error, f"j{n}") for n in range(4)]
    assert job_errors(failed) == {f"random_forest_classifier: {error}": 4}
    lines = replay_lines(failed)
    assert len(lines) == 2  # a few per distinct error, not every one
    assert lines[0].startswith("  j0 (")
    assert json.loads(lines[0].split("): ", 1)[1]) == SPEC
