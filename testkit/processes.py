"""Ending a process the tests or benchmarks started: ask, then insist."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def end(
    process: subprocess.Popen[Any],
    *,
    sig: int = signal.SIGTERM,
    grace: float = 10.0,
    kill_group: bool = False,
) -> int | None:
    """Send ``sig`` and wait ``grace`` seconds for the process to exit; then SIGKILL it, or its
    whole process group with ``kill_group`` (a worker's training children die with it). Returns
    its exit status; a process that had already exited is left as it is."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            if kill_group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait(10)
    return process.returncode
