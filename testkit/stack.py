"""Real processes for the tests: workers (``python -m workers``) and the job service (uvicorn)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from testkit.processes import end
from testkit.zkserver import free_port

ROOT = Path(__file__).resolve().parents[1]


def environment(settings: dict[str, str]) -> dict[str, str]:
    # COLUMNS and LINES are the runner's terminal (pytest-xdist's workers set 80 by 24), not
    # the child's: its output is a pipe, and the CLI sizes piped output itself.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ZOOTRAIN_") and k not in ("COLUMNS", "LINES")
    }
    env.update(settings)
    env["PYTHONPATH"] = str(ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            # The whole group: the training children die with their worker.
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        return end(self.popen, grace=timeout, kill_group=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Stack:
    directory: Path
    settings: dict[str, str]
    processes: list[Process] = field(default_factory=list)
    api_url: str | None = None

    def _spawn(
        self,
        name: str,
        argv: list[str],
        extra: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Process:
        log = self.directory / f"{name}.log"
        handle = log.open("ab")
        popen = subprocess.Popen(
            argv,
            cwd=cwd or self.directory,
            env=environment({**self.settings, **(extra or {})}),
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process = Process(name, popen, log)
        self.processes.append(process)
        return process

    def start_worker(self, name: str = "worker", cwd: Path | None = None, **extra: str) -> Process:
        """A worker; ``cwd``: its own working directory (default: the stack's)."""
        index = sum(1 for p in self.processes if p.name.startswith(name))
        worker_name = f"{name}-{index}"
        process = self._spawn(worker_name, [sys.executable, "-m", "workers"], extra, cwd)
        wait_for(
            lambda: "ready" in process.output() or not process.alive(), 60, f"{worker_name} ready"
        )
        assert process.alive(), process.output()
        return process

    def start_api(self, cwd: Path | None = None, **extra: str) -> Process:
        port = free_port()
        process = self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            extra,
            cwd,
        )
        self.api_url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{self.api_url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: ready() or not process.alive(), 60, "the job service")
        assert process.alive(), process.output()
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop(10)


def wait_for(condition: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    """Test-side waiting for an external process (the code under test uses watches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def wait_job(client: httpx.Client, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    """Poll the job until it is terminal; returns the last view."""
    last: dict[str, Any] = {}

    def terminal() -> bool:
        nonlocal last
        last = client.get(f"/v1/jobs/{job_id}").json()
        return last.get("state") in ("succeeded", "failed", "cancelled")

    try:
        wait_for(terminal, timeout, f"job {job_id}", interval=0.2)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; last view: {last}") from None
    return last


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of ``pid``, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after it.
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            continue
        parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found.add(child)
                frontier.append(child)
    return found
