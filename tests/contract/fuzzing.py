"""The fuzz run's parts: running schemathesis, reading its NDJSON report, following the jobs it
got accepted to their end."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from testkit.stack import ROOT

CONFIG = Path(__file__).with_name("schemathesis.toml")
TERMINAL = ("succeeded", "failed", "cancelled")


def run_schemathesis(
    url: str,
    token: str,
    directory: Path,
    *,
    seed: int,
    examples: int,
    phases: str = "examples,coverage,fuzzing,stateful",
    include: list[str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One schemathesis run against ``url`` with ``token``; its result and NDJSON report."""
    directory.mkdir(parents=True, exist_ok=True)
    events = directory / "events.ndjson"
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        str(ROOT / "openapi.json"),
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {token}",
        "--max-examples",
        str(examples),
        "--phases",
        phases,
        # One worker: hypothesis describes lambdas with ast.parse, which CPython 3.11 does
        # not make thread-safe ("AST constructor recursion depth mismatch").
        "--workers",
        "1",
        "--seed",
        str(seed),
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--report",
        "ndjson",
        "--report-ndjson-path",
        str(events),
    ]
    for operation_id in include or []:
        argv += ["--include-operation-id", operation_id]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # the hooks module (tests.contract.fuzz_hooks)
        "ZOOTRAIN_FUZZ_URL": url,
        "ZOOTRAIN_FUZZ_TOKEN": token,
    }
    result = subprocess.run(
        argv, capture_output=True, text=True, cwd=directory, env=env, timeout=3600
    )
    return result, events


@dataclass
class Report:
    """What the runs sent and got, from schemathesis' NDJSON reports."""

    statuses: Counter[int] = field(default_factory=Counter)
    by_operation: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    error_types: set[str] = field(default_factory=set)
    # Explicit (documented) links the stateful phase followed: (link, target status) -> count.
    links: Counter[tuple[str, int]] = field(default_factory=Counter)
    jobs: dict[str, int] = field(default_factory=dict)  # accepted job id -> its submit status

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def read(self, events: Path) -> Report:
        for line in events.read_text().splitlines():
            finished = json.loads(line).get("ScenarioFinished")
            if finished:
                self._scenario(finished["phase"], finished["recorder"])
        return self

    def _scenario(self, phase: str, recorder: dict[str, Any]) -> None:
        for case_id, interaction in recorder.get("interactions", {}).items():
            response = interaction.get("response")
            if response is None:
                continue
            case = recorder["cases"][case_id]
            operation = f"{case['value']['method'].upper()} {case['value']['path']}"
            status = response["status_code"]
            self.statuses[status] += 1
            self.by_operation[operation][status] += 1
            if status >= 400:
                headers = {k.lower(): v for k, v in response["headers"].items()}
                self.error_types.update(headers.get("content-type", ["(none)"]))
            transition = case.get("transition")
            if phase == "stateful" and transition and not transition.get("is_inferred"):
                # "POST /v1/jobs -> [202] GetJob -> GET /v1/jobs/{job_id}"
                source, link, target = transition["id"].split(" -> ")
                self.links[(f"{source} {link.split()[-1]} -> {target}", status)] += 1
            if operation == "POST /v1/jobs" and status in (200, 202):
                self.jobs.setdefault(_body(response)["id"], status)

    def successes(self, operation: str) -> int:
        return sum(n for status, n in self.by_operation[operation].items() if 200 <= status < 300)

    def table(self, operations: list[str]) -> str:
        lines = [f"  {'2xx':>5} {'all':>6}  operation"]
        for operation in operations:
            lines.append(
                f"  {self.successes(operation):>5} "
                f"{sum(self.by_operation[operation].values()):>6}  {operation}"
            )
        return "\n".join(lines)


def _body(response: dict[str, Any]) -> Any:
    content = response.get("content") or {}
    raw = base64.b64decode(content["$base64"]) if "$base64" in content else content
    return json.loads(raw)


def failures(output: str, limit: int = 12_000) -> str:
    """The failures section of schemathesis' output and its summary, long lines cut."""
    start = output.find("FAILURES")
    lines = [
        line if len(line) <= 400 else line[:400] + " ..."
        for line in output[max(start, 0) :].splitlines()
    ]
    return "\n".join(lines)[-limit:]


def documented_operations() -> list[str]:
    document = json.loads((ROOT / "openapi.json").read_text())
    return [
        f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method in operations
    ]


def documented_links() -> list[str]:
    """Every link of the document, as "SOURCE Name -> TARGET" (the Report's link keys)."""
    document = json.loads((ROOT / "openapi.json").read_text())
    by_id = {
        operation["operationId"]: f"{method.upper()} {path}"
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for response in operation["responses"].values():
                for name, link in response.get("links", {}).items():
                    found.append(f"{method.upper()} {path} {name} -> {by_id[link['operationId']]}")
    return sorted(set(found))


@dataclass
class Outcome:
    states: dict[str, str]  # job id -> last state seen (or "missing")
    server_errors: list[str]


def follow_jobs(url: str, token: str, job_ids: list[str], timeout: float) -> Outcome:
    """Read every job until it is terminal or ``timeout`` passes; every status is kept."""
    states = dict.fromkeys(job_ids, "unread")
    errors: list[str] = []
    deadline = time.monotonic() + timeout
    pending = list(job_ids)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        while pending and time.monotonic() < deadline:
            still = []
            for job_id in pending:
                response = client.get(f"/v1/jobs/{job_id}", timeout=30)
                if response.status_code >= 500:
                    errors.append(f"GET /v1/jobs/{job_id}: {response.status_code} {response.text}")
                    still.append(job_id)
                elif response.status_code == 404:
                    states[job_id] = "missing"
                else:
                    assert response.status_code == 200, response.text
                    states[job_id] = response.json()["state"]
                    if states[job_id] not in TERMINAL:
                        still.append(job_id)
            pending = still
            if pending:
                time.sleep(0.5)
    return Outcome(states, errors)


@dataclass
class FailedJob:
    id: str
    error: str
    spec: dict[str, Any]

    @property
    def key(self) -> str:
        """The algorithm and the error's first 160 characters (ids in it vary, so count by this)."""
        return f"{self.spec.get('algorithm')}: {self.error[:160]}"

    @property
    def crashed(self) -> bool:
        """Whether training died of a Python error no estimator raises to refuse its input:
        a value submit let through that the code could not handle (OverflowError converting a
        huge float, a MemoryError asking for exabytes). A ValueError is scikit-learn's own
        refusal of the data (an SGD diverging on it), a cancellation or a time limit is the
        run's doing: those can happen to a good spec and do not count."""
        return any(f"{name}:" in self.error for name in CRASHES)


CRASHES = (
    "OverflowError",
    "MemoryError",
    "TypeError",
    "AttributeError",
    "KeyError",
    "IndexError",
    "ZeroDivisionError",
    "RecursionError",
    "AssertionError",
)


def failed_jobs(url: str, token: str, job_ids: list[str]) -> list[FailedJob]:
    """Every failed job's error and spec (what replays it: POST the spec)."""
    found = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        for job_id in job_ids:
            view = client.get(f"/v1/jobs/{job_id}", timeout=30).json()
            found.append(FailedJob(job_id, view.get("error") or "", view["spec"]))
    return found


def job_errors(failed: list[FailedJob]) -> Counter[str]:
    """The error of every failed job, counted (algorithm and first line, without ids)."""
    return Counter(job.key for job in failed)


def replay_lines(failed: list[FailedJob], per_error: int = 2) -> list[str]:
    """The specs of the failed jobs, a few for each distinct error, as JSON to POST again."""
    lines: list[str] = []
    shown: Counter[str] = Counter()
    for job in failed:
        shown[job.key] += 1
        if shown[job.key] <= per_error:
            lines.append(f"  {job.id} ({job.key[:80]}): {json.dumps(job.spec, sort_keys=True)}")
    return lines
