"""The chaos run in its short form (tests/chaos/chaos.py: 30 jobs, seeded): workers at concurrency 2
SIGKILLed and replaced every few seconds and one SIGSTOPped past its session, the job service
SIGKILLed and replaced, a ZooKeeper node killed and restarted, a full quorum outage of twice the
session timeout, and the workers' connections cut by a proxy at claims and publishes, while jobs
stream in and some are cancelled. Every invariant is checked straight against ZooKeeper and the
artifact store afterwards (see the module docstring of tests/chaos/chaos.py).

ZOOTRAIN_CHAOS_SEED picks another seed; `make chaos` is the long form (200 jobs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import chaos

pytestmark = pytest.mark.integration

SEED = int(os.environ.get("ZOOTRAIN_CHAOS_SEED", "1"))


@pytest.mark.timeout(600)
def test_chaos_short_form(tmp_path: Path) -> None:
    report = chaos.run(jobs=30, seed=SEED, directory=tmp_path, say=print)
    print(report.summary())
    assert not report.violations, "\n".join([report.summary(), *report.violations])
    # The chaos did happen, and it hit work in progress.
    assert report.worker_kills >= 3 and report.api_restarts == 1
    assert report.worker_stops == 1 and report.quorum_outages == 1
    assert report.zk_restarts == 3  # one node, then two for the quorum outage
    assert report.outage_requests >= 4 and report.slow_requests == 0
    assert report.proxy_faults >= 1
    assert report.accepted == 30 and report.terminal == 30
    assert report.lost == 0 and report.stuck == 0
    assert report.succeeded + report.cancelled == 30
    assert report.versions == report.succeeded and report.double_published == 0
    assert report.written_twice == 0
    assert report.unreferenced_files == 0 and report.missing_files == 0
    assert report.busy_kills >= 1, report.summary()
