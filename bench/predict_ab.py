"""Issue 17's two serving goals, this tree against another: ``python -m bench.predict_ab``.

``bench.predict`` measures every predict figure of one tree; this measures only the two that
sit at their goals' edges, for this tree and, with ``--baseline DIR``, the job service of
another source tree (``git archive main | tar -x -C DIR``), against the same ZooKeeper and
store, in alternating rounds, so that a change is judged against its baseline under the same
load:

- the cold load of the big forest after a restart: a freshly started job service's first
  one-row prediction of it (after one of the small forest, as bench.predict does), less the
  median of the warm ones that follow, paired with ``skops.io.load`` of the same file as the
  first load of a fresh process (bench.predict.skops_fresh), just before or after it (the order
  alternates); the goal (≤ 1.2x) is judged on the median of the pairs' ratios. The same load
  in this process is printed too, not judged: its cost swings with what this long-lived
  process freed before it. Both are also given as CPU time (the service's processes against
  the fresh process), which the machine's other work moves much less than wall time;
- the one-row, one-client p50 over the same model's ``predict`` in this process, measured just
  before it, on the last service of each round, split into the model's own ``predict`` in the
  prediction process (zootrain_predict_seconds_total) and the service's share.

Each build runs ``--cold`` fresh services a round; the figures are the medians over all of
them (cold loads) and over the rounds (p50s). The machine's load is printed before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.harness import auth_env
from bench.http_load import RawHTTP
from bench.predict import (
    WARM_AFTER_COLD,
    Model,
    body_for,
    forests,
    in_process,
    load,
    plant,
    predict_spent,
    skops_fresh,
    skops_load,
    timed_prediction,
)
from bench.service_memory import start_api
from testkit.processes import end
from testkit.stack import descendants
from testkit.zkserver import ZooKeeperCluster

FEATURES = 20
ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of ``pids`` (every thread's, ended ones too), from /proc."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def skops_cpu(path: Path) -> tuple[float, float]:
    """bench.predict.skops_load's wall time, and its thread's CPU time."""
    started = time.thread_time()
    wall = skops_load(path)
    return wall, time.thread_time() - started


def stop(process: subprocess.Popen[Any]) -> None:
    end(process, grace=20, kill_group=True)


@dataclass
class Build:
    name: str
    source: Path
    cold: list[float] = field(default_factory=list)
    cold_cpu: list[float] = field(default_factory=list)  # the service's processes' CPU
    skops_cpu: list[float] = field(default_factory=list)
    fresh: list[float] = field(default_factory=list)  # skops' load in a fresh process
    service_cpu: list[float] = field(default_factory=list)  # a one-row request's, uvicorn's
    child_cpu: list[float] = field(default_factory=list)  # and its prediction process's
    fresh_cpu: list[float] = field(default_factory=list)
    pairs: list[float] = field(default_factory=list)  # cold / its fresh process's skops load
    skops: list[float] = field(default_factory=list)
    overhead: list[float] = field(default_factory=list)  # p50 - in-process p50, a round
    model_share: list[float] = field(default_factory=list)  # child's predict - in-process


async def measure(
    build: Build,
    settings: dict[str, str],
    directory: Path,
    models: list[Model],
    file: Path,
    cold: int,
    duration: float,
    flip: bool,
) -> None:
    small, big = models
    X, one_row = body_for(1)
    loop = asyncio.get_running_loop()
    for index in range(cold):
        before = (index % 2 == 0) != flip
        if before:
            skops, skops_time = await loop.run_in_executor(None, skops_cpu, file)
        process, url = await loop.run_in_executor(
            None, start_api, build.source, settings, directory / f"{build.name}.log"
        )
        try:
            connection = await RawHTTP(url).connect()
            try:
                await timed_prediction(connection, small.name, one_row)
                # The service and all its processes (forkserver, prediction process): their
                # CPU is what the load costs whatever else the machine runs.
                pids = [process.pid, *descendants(process.pid)]
                cpu_before = cpu_seconds(pids)
                first = await timed_prediction(connection, big.name, one_row)
                cpu_first = cpu_seconds(pids)
                warm = [
                    await timed_prediction(connection, big.name, one_row)
                    for _ in range(WARM_AFTER_COLD)
                ]
                cpu_warm = (cpu_seconds(pids) - cpu_first) / len(warm)
            finally:
                await connection.close()
            if index == cold - 1:  # the round's latency, on its last service
                here = await loop.run_in_executor(None, in_process, big.model, X, 2.0)
                spent = await predict_spent(url)
                children = descendants(process.pid)
                service_before, children_before = (
                    cpu_seconds([process.pid]),
                    cpu_seconds(list(children)),
                )
                level = await load(url, f"/v1/models/{big.name}/predict", one_row, 1, 1, duration)
                requests = len(level.latencies) + 1  # and its warm-up
                build.service_cpu.append((cpu_seconds([process.pid]) - service_before) / requests)
                build.child_cpu.append((cpu_seconds(list(children)) - children_before) / requests)
                seconds, calls = await predict_spent(url)
                p50 = statistics.median(level.latencies)
                inside = (seconds - spent[0]) / max(1.0, calls - spent[1])
                build.overhead.append(p50 - here)
                build.model_share.append(inside - here)
        finally:
            await loop.run_in_executor(None, stop, process)
        if not before:
            skops, skops_time = await loop.run_in_executor(None, skops_cpu, file)
        fresh, fresh_time = await loop.run_in_executor(None, skops_fresh, file)
        build.fresh.append(fresh)
        build.fresh_cpu.append(fresh_time)
        load_time = first - statistics.median(warm)
        build.cold.append(load_time)
        build.skops.append(skops)
        build.pairs.append(load_time / fresh)
        build.cold_cpu.append(cpu_first - cpu_before - cpu_warm)
        build.skops_cpu.append(skops_time)
        print(
            f"{build.name}: cold load {load_time * 1000:.0f} ms, skops {skops * 1000:.0f} ms "
            f"(CPU {skops_time * 1000:.0f} ms) in this process; in a fresh process "
            f"{fresh * 1000:.0f} ms (CPU {fresh_time * 1000:.0f} ms): {load_time / fresh:.2f}x; "
            f"the service's CPU {build.cold_cpu[-1] * 1000:.0f} ms",
            file=sys.stderr,
        )
    if build.overhead:
        print(
            f"{build.name}: one-row p50 overhead {build.overhead[-1] * 1000:.2f} ms "
            f"(model's share {build.model_share[-1] * 1000:.2f} ms); CPU a request: job service "
            f"{build.service_cpu[-1] * 1000:.2f} ms, its children "
            f"{build.child_cpu[-1] * 1000:.2f} ms",
            file=sys.stderr,
        )


def cpu_pairs(build: Build) -> list[float]:
    return [c / k for c, k in zip(build.cold_cpu, build.fresh_cpu, strict=True)]


def report(builds: list[Build], rounds: int) -> str:
    def ms(values: list[float], digits: int = 2) -> str:
        return ", ".join(f"{v * 1000:.{digits}f}" for v in values)

    lines = [
        "| build | cold load / skops in a fresh process (median of pairs) | cold load "
        "| skops.io.load in a fresh process | CPU: the service's processes / the fresh process "
        "| skops.io.load in this process (not judged) "
        "| one-row p50 over in-process (1 client) | of which the model's own predict "
        "| CPU a one-row request: job service, its children |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for b in builds:
        lines.append(
            f"| {b.name} | {statistics.median(b.pairs):.3f}x "
            f"(pairs {', '.join(f'{p:.2f}' for p in b.pairs)}) "
            f"| {statistics.median(b.cold) * 1000:.0f} ms "
            f"| {statistics.median(b.fresh) * 1000:.0f} ms "
            f"| {statistics.median(b.cold_cpu) * 1000:.0f} / "
            f"{statistics.median(b.fresh_cpu) * 1000:.0f} ms: "
            f"{statistics.median(cpu_pairs(b)):.3f}x "
            f"| {statistics.median(b.skops) * 1000:.0f} ms ({ms(b.skops, 0)}) "
            f"| +{statistics.median(b.overhead) * 1000:.2f} ms (rounds {ms(b.overhead)}) "
            f"| {statistics.median(b.model_share) * 1000:.2f} ms "
            f"| {statistics.median(b.service_cpu) * 1000:.2f} ms, "
            f"{statistics.median(b.child_cpu) * 1000:.2f} ms |"
        )
    if len(builds) == 2:
        this, base = builds
        lines.append("")
        lines.append(
            f"this tree / baseline, {rounds} interleaved rounds: cold-load ratio "
            f"{statistics.median(this.pairs) / statistics.median(base.pairs):.3f}; one-row "
            f"overhead {statistics.median(this.overhead) * 1000:.2f} ms against "
            f"{statistics.median(base.overhead) * 1000:.2f} ms"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.predict_ab", description=__doc__)
    parser.add_argument("--baseline", type=Path, help="another source tree to compare with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", type=int, default=3, help="fresh services a build a round")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of one-row load")
    parser.add_argument("--quick", action="store_true", help="the 10 MB forest, not 100 MB")
    args = parser.parse_args(argv)
    # Stopped by a signal: end the services and ZooKeeper it started (the finally blocks).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    builds = [Build("this tree", ROOT)]
    if args.baseline is not None:
        builds.append(Build("baseline", args.baseline.resolve()))
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    models = forests(args.quick)
    with tempfile.TemporaryDirectory(prefix="bench-predict-ab-") as tmp:
        directory = Path(tmp)
        zk = ZooKeeperCluster(directory / "zk", size=1).start()
        try:
            settings = {
                "ZOOTRAIN_ZK_HOSTS": zk.hosts,
                "ZOOTRAIN_ZK_ROOT": f"/bench-predict-ab-{uuid.uuid4().hex[:6]}",
                "ZOOTRAIN_ARTIFACTS": str(directory / "artifacts"),
                "ZOOTRAIN_ZK_SESSION_TIMEOUT": "10",
                "ZOOTRAIN_HOUSEKEEPING_INTERVAL": "3600",
                **auth_env(),
            }
            for m in models:
                plant(settings, m)
            file = directory / "big.skops"
            file.write_bytes(models[-1].data)
            for index in range(args.rounds):
                order = builds if index % 2 == 0 else builds[::-1]
                for build in order:
                    asyncio.run(
                        measure(
                            build,
                            settings,
                            directory,
                            models,
                            file,
                            args.cold,
                            args.duration,
                            flip=index % 2 == 1,
                        )
                    )
        finally:
            zk.stop()
    print(f"load average after: {os.getloadavg()}", file=sys.stderr)
    print(report(builds, args.rounds))
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"\n(finished {started}; {len(models[-1].data) / 1e6:.0f} MB forest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
