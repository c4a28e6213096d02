"""Sampling profiles of running services with py-spy (attached by pid: no code change).

``Profiler(pid).start()`` ... ``stop()`` records collapsed stacks (py-spy's raw format: one
line per distinct stack, ``frame;frame;...;frame count``) of the threads holding the GIL, i.e.
Python code running (uvloop's and the selectors' waits drop out); with ``subprocesses`` the
training children forked by a worker's forkserver are sampled too and summarised apart.
``summary()`` prints the functions with the most samples on their own (self) and in their
callees too (inclusive), plus the project's own functions alone.
"""

from __future__ import annotations

import re
import signal
import subprocess
from collections import Counter
from pathlib import Path

from bench.process_stats import tool
from testkit.processes import end

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
PROJECT = ("zootrain/", "app/", "workers/")


class Profiler:
    def __init__(
        self, name: str, pid: int, directory: Path, *, rate: int = 200, subprocesses: bool = False
    ) -> None:
        self.name = name
        self.subprocesses = subprocesses
        self.pid = pid
        self.directory = directory
        self.slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
        self.rate = rate
        self.process: subprocess.Popen[bytes] | None = None
        self.outputs: list[Path] = []

    @property
    def output(self) -> Path:
        return self.directory / f"profile-{self.slug}-{self.pid}.txt"

    @property
    def log(self) -> Path:
        return self.directory / f"profile-{self.slug}-{self.pid}.log"

    @staticmethod
    def available() -> bool:
        return tool("py-spy") is not None

    def start(self) -> Profiler:
        executable = tool("py-spy")
        if executable is None:
            raise RuntimeError("py-spy is missing: pip install -e '.[test]'")
        argv = [executable, "record", "--pid", str(self.pid), "--format", "raw"]
        argv += ["--rate", str(self.rate), "--nonblocking", "--gil", "-o", str(self.output)]
        if self.subprocesses:
            argv.append("--subprocesses")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.outputs.append(self.output)
        return self

    def retarget(self, pid: int) -> None:
        """The process was replaced (e.g. a worker restarted): go on sampling the new one."""
        self.stop()
        self.pid = pid
        self.start()

    def stop(self) -> None:
        if self.process is None:
            return
        end(self.process, sig=signal.SIGINT, grace=60)  # py-spy writes its output on Ctrl-C
        self.process = None

    def stacks(self) -> Counter[tuple[str, tuple[str, ...]]]:
        """(process group, frames) -> samples; groups: main, forkserver, children, other."""
        found: Counter[tuple[str, tuple[str, ...]]] = Counter()
        lines = [
            line
            for output in self.outputs or [self.output]
            if output.exists()
            for line in output.read_text(errors="replace").splitlines()
        ]
        for line in lines:
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            frames = stack.split(";")
            processes = [f for f in frames if f.startswith("process ")]
            if len(processes) <= 1:
                group = "main"
            elif any("forkserver" in p for p in processes[1:-1]):
                group = "children"
            elif "forkserver" in processes[-1]:
                group = "forkserver"
            else:
                group = "other"
            names = tuple(_name(f) for f in frames if not f.startswith("process "))
            if names:
                found[(group, names)] += int(count)
        return found

    def summary(self, top: int = 12) -> str:
        stacks = self.stacks()
        if not stacks:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            return f"### profile: {self.name} (pid {self.pid})\n\nno samples. {log.strip()}"
        parts = []
        for group in ("main", "children"):
            selected = Counter({f: c for (g, f), c in stacks.items() if g == group})
            if not selected:
                continue
            title = self.name if group == "main" else f"{self.name}'s training children"
            parts.append(_table(title, self.pid, self.rate, selected, top))
        parts.append("raw stacks: " + ", ".join(str(o) for o in self.outputs))
        return "\n\n".join(parts)


def _table(title: str, pid: int, rate: int, stacks: Counter[tuple[str, ...]], top: int) -> str:
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    project: Counter[str] = Counter()
    for stack, count in stacks.items():
        own[stack[-1]] += count
        for frame in set(stack):
            inclusive[frame] += count
            if frame.startswith(PROJECT):
                project[frame] += count
    lines = [
        f"### profile: {title} (pid {pid}): {total} samples at {rate} Hz holding the GIL "
        f"(≈ {total / rate:.1f} s of Python)",
        "",
        "| self | function | inclusive | function | inclusive | project function |",
        "| ---: | --- | ---: | --- | ---: | --- |",
    ]
    columns = [own.most_common(top), inclusive.most_common(top), project.most_common(top)]
    for index in range(top):
        cells: list[str] = []
        for column in columns:
            if index < len(column):
                frame, count = column[index]
                cells += [f"{100 * count / total:.1f}%", f"`{frame}`"]
            else:
                cells += ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _name(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``path/to/file.py:function``, lines dropped."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "lib/python3."):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "lib/python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
            break
    for root in PROJECT:
        if f"/{root}" in path:
            path = root + path.split(f"/{root}", 1)[1]
    return f"{path}:{match['function']}"
