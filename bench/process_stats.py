"""What a process costs: resident and unique memory, CPU seconds, its children; and where the
tools are (py-spy).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def rss_bytes(pid: int) -> float | None:
    try:
        import psutil  # optional: /proc says the same on Linux

        return float(psutil.Process(pid).memory_info().rss)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return float(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (and of its live children), from /proc."""
    pids = [pid] + ([p for p, _ in child_processes(pid)] if children else [])
    total = 0.0
    for each in pids:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def uss_bytes(pid: int) -> float | None:
    """Memory only this process holds (psutil's USS); None without psutil."""
    try:
        import psutil

        return float(psutil.Process(pid).memory_full_info().uss)
    except Exception:
        return None


def child_processes(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of ``pid``'s live children, from /proc."""
    found: list[tuple[int, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) != pid or fields[0] == "Z":
                continue
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, IndexError, ValueError):
            continue
        found.append((int(entry), cmdline.decode(errors="replace").strip()))
    return found


def tool(name: str) -> str | None:
    """An executable next to this interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)
