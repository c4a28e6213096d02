"""The chaos run in its short form (bench/chaos.py: 30 jobs, seeded): workers SIGKILLed and
replaced every few seconds, the job service SIGKILLed and replaced, a ZooKeeper node killed and
restarted, while jobs stream in and some are cancelled. Every invariant is checked straight
against ZooKeeper afterwards (see the module docstring of bench/chaos.py).

ZOOTRAIN_CHAOS_SEED picks another seed; `python -m bench.chaos --long` is the long form."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import chaos

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("ZOOTRAIN_CHAOS_SEED", "1"))


@pytest.mark.timeout(480)
def test_chaos_short_form(tmp_path: Path) -> None:
    report = chaos.run(jobs=30, seed=SEED, directory=tmp_path, say=print)
    print(report.summary())
    assert not report.violations, "\n".join([report.summary(), *report.violations])
    # The chaos did happen, and it hit work in progress.
    assert report.worker_kills >= 3 and report.api_restarts == 1 and report.zk_restarts == 1
    assert report.accepted == 30
    assert report.succeeded + report.cancelled == 30
    assert report.versions == report.succeeded
    assert report.busy_kills >= 1, report.summary()
