"""The contract: openapi.json is what the app serves, and fuzzing it never gets a 5xx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from app.openapi import document
from tests.support.auth import ADMIN_TOKEN
from tests.support.stack import ROOT, Stack

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.integration


def test_openapi_json_is_current() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert json.loads(committed) == json.loads(document()), "run `make openapi` and commit it"


def test_served_document_matches(stack: Stack) -> None:
    stack.start_api()
    served = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert served == json.loads((ROOT / "openapi.json").read_text())


# `make fuzz` runs the long form: 10,000 requests or more.
EXAMPLES = int(os.environ.get("ZOOTRAIN_FUZZ_EXAMPLES", "60"))
MIN_REQUESTS = int(os.environ.get("ZOOTRAIN_FUZZ_MIN_REQUESTS", "1000"))


def test_schemathesis_finds_no_server_error(stack: Stack, tmp_path: Path) -> None:
    """Property-based requests against every operation of the live app (real ZooKeeper), with
    a valid token: no 5xx, every error problem+json, and `ignored_auth` proves that each
    operation the document marks as secured refuses a request without the token."""
    stack.start_api()
    stack.start_worker()
    events = tmp_path / "events.ndjson"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            str(ROOT / "openapi.json"),
            "--url",
            stack.api_url or "",
            "--header",
            f"Authorization: Bearer {ADMIN_TOKEN}",
            "--checks",
            "not_a_server_error,content_type_conformance,ignored_auth",
            "--max-examples",
            str(EXAMPLES),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            # One worker: hypothesis describes lambdas with ast.parse, which CPython 3.11 does
            # not make thread-safe ("AST constructor recursion depth mismatch").
            "--workers",
            "1",
            "--seed",
            "1",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "30",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(events),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=3600,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, (
        report + "\n--- api log ---\n" + stack.processes[0].output()[-4000:]
    )
    statuses, error_types = _responses(events)
    total = sum(statuses.values())
    assert total >= MIN_REQUESTS, f"only {total} requests were made: {statuses}"
    assert not [s for s in statuses if s >= 500], statuses
    assert error_types == {PROBLEM}, error_types
    # The token was accepted: most requests reached the operations' own logic.
    assert statuses[401] < total // 10, statuses
    assert statuses[200] + statuses[202] + statuses[204] > total // 10, statuses


def _responses(events: Path) -> tuple[Counter[int], set[str]]:
    """Status codes of every response in schemathesis' NDJSON report, and the media types of
    the error responses."""
    statuses: Counter[int] = Counter()
    error_types: set[str] = set()
    for line in events.read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        for interaction in finished["recorder"].get("interactions", {}).values():
            response = interaction.get("response")
            if response is None:
                continue
            statuses[response["status_code"]] += 1
            if response["status_code"] >= 400:
                headers = {k.lower(): v for k, v in response["headers"].items()}
                error_types.update(headers.get("content-type", ["(none)"]))
    return statuses, error_types
