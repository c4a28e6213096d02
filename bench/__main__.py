"""``python -m bench``: run the benchmarks and print one Markdown table.

python -m bench                       # the full form (< 15 minutes on 2 cores)
python -m bench --quick               # a short smoke form
python -m bench --only submit,dispatch
python -m bench --only dispatch --profile   # py-spy on the job service and a worker
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.figures import Figure
from bench.harness import Context
from bench.report import as_json, markdown

BENCHES = ("submit", "dispatch", "e2e", "overhead", "footprint", "scale", "predict", "peers")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke form")
    parser.add_argument(
        "--only", default=",".join(BENCHES), help=f"comma-separated subset of {','.join(BENCHES)}"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile the job service and a worker with py-spy during the dispatch benchmark",
    )
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--duration", type=float, help="seconds per submit load level")
    parser.add_argument("--dispatch-jobs", type=int, help="jobs timed by the dispatch benchmark")
    parser.add_argument("--e2e-rows", type=int, help="rows of the end-to-end dataset")
    parser.add_argument("--e2e-cpu", type=float, help="CPU seconds the end-to-end forest takes")
    parser.add_argument("--scale-sizes", help="queue sizes, e.g. 100,1000,10000")
    parser.add_argument("--peers-cpu", type=float, help="CPU seconds the peers' forest takes")
    parser.add_argument("--peers-runs", type=int, help="runs of each peers figure (median)")
    parser.add_argument("--peers-tasks", type=int, help="tiny tasks per peers batch")
    return parser.parse_args(argv)


def _interrupt(signum: int, frame: object) -> None:
    # SIGTERM takes Ctrl-C's path, so every stack's `finally` ends its ZooKeeper and
    # services (they run in their own sessions and would not hear the signal themselves).
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    names = [n for n in BENCHES if n in names]  # dispatch and e2e feed overhead: keep order
    options: dict[str, Any] = {
        "duration": args.duration,
        "dispatch_jobs": args.dispatch_jobs,
        "e2e_rows": args.e2e_rows,
        "e2e_cpu": args.e2e_cpu,
        "scale_sizes": [int(s) for s in args.scale_sizes.split(",")] if args.scale_sizes else None,
        "peers_cpu": args.peers_cpu,
        "peers_runs": args.peers_runs,
        "peers_tasks": args.peers_tasks,
    }
    workdir = Path(tempfile.mkdtemp(prefix="zootrain-bench-"))
    ctx = Context(quick=args.quick, workdir=workdir, profile=args.profile, options=options)
    figures: list[Figure] = []
    failed: list[str] = []
    load_before = os.getloadavg()
    started = time.monotonic()
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        ctx.log(f"{name}: start")
        begun = time.monotonic()
        try:
            figures += asyncio.run(module.run(ctx))
        except Exception as exc:
            traceback.print_exc()
            failed.append(name)
            figures.append(
                Figure(f"{name}: FAILED", None, "", note=repr(exc), command=ctx.command(name))
            )
        ctx.log(f"{name}: done in {time.monotonic() - begun:.0f}s")
    elapsed = time.monotonic() - started
    load_after = os.getloadavg()

    lines = [
        f"## zootrain benchmarks ({'quick' if args.quick else 'full'} form)",
        "",
        f"{os.cpu_count()} cores; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {elapsed:.0f} s. Ratios are value / baseline, both "
        "measured in this run on the same ZooKeeper server.",
        "",
        markdown(figures),
    ]
    for summary in ctx.profiles:
        lines += ["", summary]
    report = "\n".join(lines)
    print(report, flush=True)
    if args.output:
        args.output.write_text(report + "\n")
    if args.json:
        args.json.write_text(as_json(figures) + "\n")
    if args.keep or failed:
        print(f"\nlogs and data: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
