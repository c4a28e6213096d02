"""The benchmark suite still runs: ``python -m bench --quick`` on two benchmarks prints its table.

Nothing here asserts a timing (the machine is shared); only that the suite works end to end
and reports every figure it promises.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEADER = "| figure | value | baseline | ratio | goal | met? | command |"


@pytest.mark.timeout(120)
def test_quick_bench_prints_the_table() -> None:
    argv = [sys.executable, "-m", "bench", "--quick", "--only", "submit,dispatch"]
    argv += ["--duration", "0.5", "--dispatch-jobs", "5"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert HEADER in lines, done.stdout
    rows = [x for x in lines if x.startswith("| ") and x != HEADER and not x.startswith("| ---")]
    submit = [r for r in rows if r.startswith("| submit: ")]
    dispatch = [r for r in rows if r.startswith("| dispatch: ")]
    # the raw baseline, then rate, p50 and p99 at 1, 8 and 64 clients
    assert len(submit) == 1 + 3 * 3, submit
    assert any("202 → first shard running, p50" in r for r in dispatch), dispatch
    assert any("last shard done → published, p99" in r for r in dispatch), dispatch
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert len(cells) == 7, row
        assert "FAILED" not in cells[0], row
        assert cells[6].startswith("`python -m bench --only "), row
