"""How long a CLI command takes to start: ``python -m bench.cli_start [--baseline DIR]``.

Wall time of ``python -m zootrain.cli --help`` and of an offline command
(``python -m zootrain.cli token new bench``), each run ``--runs`` times as a fresh process;
with ``--baseline DIR`` (another source tree, for example the previous commit exported with
``git archive <rev> | tar -x -C DIR``), the same commands from that tree, alternating with this
tree's runs so both see the same machine load. Baseline: a bare ``python -c pass``. Figures are
medians of wall time and of CPU time (user + system: what a loaded machine inflates least); the
goal is under 0.25 s of wall time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.25
COMMANDS = {
    "--help": ["-m", "zootrain.cli", "--help"],
    "token new": ["-m", "zootrain.cli", "token", "new", "bench"],
}


def run_once(argv: list[str], source: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; CPU time says the same on a loaded machine."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *argv], cwd=source, env=env, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, argv
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_start", description=__doc__)
    parser.add_argument("--baseline", type=Path, help="another source tree to compare with")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    trees = {"this tree": ROOT}
    if args.baseline is not None:
        trees["baseline"] = args.baseline.resolve()
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    bare: list[tuple[float, float]] = []
    for _ in range(args.runs):
        bare.append(run_once(["-c", "pass"], ROOT))
        for command, command_argv in COMMANDS.items():
            for tree, source in trees.items():
                times.setdefault((command, tree), []).append(run_once(command_argv, source))
    bare_wall = statistics.median(w for w, _ in bare)
    bare_cpu = statistics.median(c for _, c in bare)
    print("| command | tree | wall, median | CPU, median | bare python (wall / CPU) | goal |")
    print("| --- | --- | --- | --- | --- | --- |")
    for (command, tree), runs in times.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        met = "met" if wall < GOAL else "not met"
        print(
            f"| `{command}` | {tree} | {wall:.3f} s | {cpu:.3f} s "
            f"| {bare_wall:.3f} s / {bare_cpu:.3f} s | < {GOAL} s: {met} |"
        )
    print(f"\nMedian of {args.runs} runs each, interleaved.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
