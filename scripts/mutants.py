"""A mutation check for the critical paths: each mutant is a deliberate bug, applied by exact text
substitution to a scratch copy of the repository; the tests that guard that path run against
the copy, and must fail. A mutant whose tests pass is a hole in the suite.

    python scripts/mutants.py [--only NAME ...] [--no-baseline] [--keep]

The copy holds the files git knows (tracked, and untracked ones not ignored: what a commit of
the working tree would hold), so .venv, var/ and caches stay behind. The tests run with this
interpreter (the project's virtualenv), from the copy, with PYTHONPATH set to the copy: its
modules come before the virtualenv's editable install, and the processes the tests start (job
service, workers, their training children) get the copy's path from testkit/stack.py.
The script checks that an import from the copy really resolves there before running anything.

An anchor that is not found exactly once stops the run: a refactor must update the mutant here
rather than leave it silently testing nothing. A test run that errors (exit status other than
0 or 1: a collection error, a usage error) is neither killed nor survived: it fails the run.
Before the mutants, a baseline runs every mutant's tests on the unchanged copy: a test that
fails there would "kill" every mutant for nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    path: str
    anchor: str
    replacement: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant(
        name="shard-write-unversioned",
        what="a shard's outcome is written whatever the record's version (no fencing)",
        path="workers/worker.py",
        anchor="""                outcome,
                claim.stat.version,
                claim.session,
                before=None if artifact is None else functools.partial(self.touch, artifact),""",
        replacement="""                outcome,
                -1,
                claim.session,
                before=None if artifact is None else functools.partial(self.touch, artifact),""",
        tests=(
            "tests/failover/test_fencing.py::"
            "test_a_frozen_worker_whose_child_answered_has_its_result_refused_on_its_version",
        ),
    ),
    Mutant(
        name="publish-unversioned",
        what="the publishing multi sets the job whatever its version",
        path="zootrain/queue.py",
        anchor="tx.set_data(self.paths.job(job.id), done.dump(), stat.version)",
        replacement="tx.set_data(self.paths.job(job.id), done.dump(), -1)",
        tests=(
            "tests/failover/test_fencing.py::"
            "test_a_merger_frozen_mid_merge_cannot_publish_after_the_job_was_published",
        ),
    ),
    Mutant(
        name="backoff-zero",
        what="retry backoff is always zero",
        path="zootrain/queue.py",
        anchor="    return float(min(cap, base * math.pow(2, max(0, attempts - 1))))",
        replacement="    return 0.0",
        tests=("tests/unit/test_backoff.py", "tests/integration/test_retry_backoff.py"),
    ),
    Mutant(
        name="worker-ignores-backoff",
        what="the worker retries a failed shard at once, whatever backoff_delay says",
        path="workers/worker.py",
        anchor="""                delay = backoff_delay(
                    shard.attempts, self.settings.retry_backoff, self.settings.retry_backoff_max
                )""",
        replacement="""                delay = 0.0""",
        tests=("tests/integration/test_retry_backoff.py",),
    ),
    Mutant(
        name="submit-two-transactions",
        what="the submit commits the job and its shards, then the queue entry and key apart",
        path="zootrain/queue.py",
        anchor="tx.create(self.paths.queue_prefix(job.id, spec.priority)",
        replacement=(
            "await self.zk.commit(tx)\n        tx = self.zk.transaction()\n"
            "        tx.create(self.paths.queue_prefix(job.id, spec.priority)"
        ),
        tests=(
            "tests/integration/test_submit.py",
            "tests/failover/test_unanswered_writes.py",
        ),
    ),
    Mutant(
        name="housekeeper-deletes-unreadable",
        what="the housekeeper deletes the queue entry of a job record it could not parse",
        path="workers/housekeeping.py",
        anchor="""                self._unreadable("job", self.paths.job(entry.job_id), exc)
                continue""",
        replacement="""                self._unreadable("job", self.paths.job(entry.job_id), exc)
                job = None""",
        tests=(
            "tests/failover/test_housekeeping_safety.py::"
            "test_a_job_record_that_does_not_parse_keeps_its_queue_entry",
        ),
    ),
    Mutant(
        name="group-commit-trusts-a-combined-failure",
        what="a combined submit multi that fails refuses its failing member at once (the failure "
        "may be another member's doing: two submits with one Idempotency-Key)",
        path="zootrain/group_commit.py",
        anchor="""        if len(batch) == 1:
            _answer(batch[0], error=TransactionFailed(failure.index, failure.error))
            return""",
        replacement="""        start = 0
        for member in batch:
            end = start + len(member.operations)
            if start <= failure.index < end:
                _answer(member, error=TransactionFailed(failure.index - start, failure.error))
            start = end
        batch = [m for m in batch if not m.future.done()]
        if not batch:
            return""",
        tests=("tests/integration/test_group_commit.py",),
    ),
    Mutant(
        name="group-commit-unsent-is-sent",
        what="a submit withdrawn at its deadline is still marked sent: a 503 that says nothing was "
        "written becomes Outcome unknown, or a withdrawn submit is sent after its answer",
        path="zootrain/group_commit.py",
        anchor="""    def _abandon(self, member: _Member) -> None:
        member.abandoned = True
        if not member.sent:""",
        replacement="""    def _abandon(self, member: _Member) -> None:
        member.abandoned = True
        if False:""",
        tests=("tests/integration/test_group_commit.py",),
    ),
    Mutant(
        name="merge-never-handed-off",
        what="a scan claims a job's first merge at once, racing the worker that settled its "
        "last shard (whose refused claim stops the merging child it started)",
        path="workers/worker.py",
        anchor="""            elif self._handed_off(job, shards):""",
        replacement="""            elif False:""",
        tests=(
            "tests/integration/test_claim_multi.py::"
            "test_a_scan_leaves_a_first_merge_to_the_worker_that_settled_the_last_shard_for_a_while",
        ),
    ),
    Mutant(
        name="sent-before-the-write",
        what="a commit's 'sent' callback runs before its multi is queued: the reads sent from "
        "it (the job's other shards) may not see the shard's own outcome",
        path="zootrain/zk.py",
        anchor="""        if limit is None:
            future = self._bridge(start())
            if sent is not None:
                sent()""",
        replacement="""        if limit is None:
            if sent is not None:
                sent()
            future = self._bridge(start())""",
        tests=(
            "tests/integration/test_claim_multi.py::"
            "test_reads_sent_right_behind_a_settle_are_answered_after_it_and_see_it",
        ),
    ),
    Mutant(
        name="group-child-stopped-by-one-member",
        what="a group's shared child is killed as soon as one member stops waiting on it",
        path="workers/shard_groups.py",
        anchor="if not self.waiting and self.child is not None and not self.child.done():",
        replacement="if self.child is not None and not self.child.done():",
        tests=(
            "tests/unit/test_shard_groups.py::"
            "test_the_child_is_stopped_only_when_every_member_has_stopped_waiting",
        ),
    ),
    Mutant(
        name="group-claims-running-shards",
        what="a group claim also takes running shards (whose owner may live), skipping the "
        "look at their locks a claim of one makes first",
        path="workers/shard_groups.py",
        anchor="""        if shard.state == ShardState.pending
        and (shard.not_before or 0) <= now""",
        replacement="""        if shard.state in (ShardState.pending, ShardState.running)
        and (shard.not_before or 0) <= now""",
        tests=(
            "tests/unit/test_shard_groups.py::"
            "test_a_group_claim_takes_the_pending_due_shards_with_attempts_left",
        ),
    ),
]


def copy_repository(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in listed:
        if not raw:
            continue
        relative = raw.decode()
        source = ROOT / relative
        if not source.is_file():  # deleted in the working tree, or a submodule
            continue
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def environment(copy: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing stale between one mutant and the next
    return env


def check_imports(copy: Path) -> None:
    """The modules under test must come from the copy, not from the editable install."""
    code = "import app, workers, zootrain; print(app.__file__, workers.__file__, zootrain.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", code],
        cwd=copy,
        env=environment(copy),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    outside = [path for path in found if not Path(path).resolve().is_relative_to(copy.resolve())]
    if outside or len(found) != 3:
        sys.exit(f"mutants: the copy's modules are not the ones imported: {found}")


def run_tests(copy: Path, tests: tuple[str, ...], log: Path) -> tuple[int, float]:
    started = time.monotonic()
    with log.open("wb") as output:
        status = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
            cwd=copy,
            env=environment(copy),
            stdout=output,
            stderr=subprocess.STDOUT,
        ).returncode
    return status, time.monotonic() - started


def apply(copy: Path, mutant: Mutant) -> str:
    """Apply ``mutant`` to the copy; the file's original text (to restore)."""
    path = copy / mutant.path
    original = path.read_text()
    count = original.count(mutant.anchor)
    if count != 1:
        sys.exit(
            f"mutants: {mutant.name}: its anchor is found {count} times in {mutant.path} "
            "(expected once): update the mutant to the code"
        )
    path.write_text(original.replace(mutant.anchor, mutant.replacement))
    return original


def table(rows: list[tuple[str, str, str, float]]) -> str:
    headers = ("mutant", "tests run", "result", "seconds")
    cells = [headers, *((m, t, r, f"{s:.1f}") for m, t, r, s in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    lines = []
    for number, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="mutant names to run")
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy and logs")
    args = parser.parse_args()
    names = {m.name for m in MUTANTS}
    unknown = set(args.only or ()) - names
    if unknown:
        parser.error(f"unknown mutants {sorted(unknown)}; known: {sorted(names)}")
    mutants = [m for m in MUTANTS if args.only is None or m.name in args.only]

    scratch = Path(tempfile.mkdtemp(prefix="zootrain-mutants-"))
    copy, logs = scratch / "repo", scratch / "logs"
    logs.mkdir()
    copy_repository(copy)
    check_imports(copy)
    # Every anchor is checked before any test runs: a stale one fails at once.
    for mutant in mutants:
        text = (copy / mutant.path).read_text()
        if text.count(mutant.anchor) != 1:
            apply(copy, mutant)  # exits, naming the mutant

    rows: list[tuple[str, str, str, float]] = []
    failed = False
    try:
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
            status, seconds = run_tests(copy, tests, logs / "baseline.log")
            rows.append(("(none: baseline)", "all of the below", _baseline(status), seconds))
            print(table(rows[-1:]), flush=True)
            if status != 0:
                print(f"\nthe unmutated copy fails its tests: see {logs / 'baseline.log'}")
                args.keep = True
                return 1
        for mutant in mutants:
            original = apply(copy, mutant)
            try:
                status, seconds = run_tests(copy, mutant.tests, logs / f"{mutant.name}.log")
            finally:
                (copy / mutant.path).write_text(original)
            result = {0: "SURVIVED", 1: "killed"}.get(status, f"ERROR (pytest exit {status})")
            if status == 1:
                result += f" by {first_failure(logs / f'{mutant.name}.log')}"
            failed |= status != 1
            shown = ", ".join(t.replace("tests/", "").split("::")[-1] for t in mutant.tests)
            rows.append((mutant.name, shown, result, seconds))
            print(f"{mutant.name}: {result} in {seconds:.1f}s ({mutant.what})", flush=True)
    finally:
        print()
        print(table(rows))
        if failed or args.keep:
            print(f"\nlogs: {logs}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if failed:
        print("\nmutants: a mutant survived or its tests errored: the suite has a hole there")
        return 1
    print(f"\nmutants: all {len(mutants)} killed")
    return 0


def first_failure(log: Path) -> str:
    """The test that failed first, from pytest's short summary ("FAILED path::name - why")."""
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split()[1].split("::")[-1]
    return "?"


def _baseline(status: int) -> str:
    return "passed" if status == 0 else f"FAILED (pytest exit {status})"


if __name__ == "__main__":
    sys.exit(main())
