"""The contract: openapi.json is what the app serves, and fuzzing it never gets a 5xx."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.openapi import document
from tests.support.stack import ROOT, Stack

pytestmark = pytest.mark.integration


def test_openapi_json_is_current() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert json.loads(committed) == json.loads(document()), "run `make openapi` and commit it"


def test_served_document_matches(stack: Stack) -> None:
    stack.start_api()
    served = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert served == json.loads((ROOT / "openapi.json").read_text())


def test_schemathesis_finds_no_server_error(stack: Stack, tmp_path: Path) -> None:
    """Property-based requests against every operation of the live app (real ZooKeeper)."""
    stack.start_api()
    stack.start_worker()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            str(ROOT / "openapi.json"),
            "--url",
            stack.api_url or "",
            "--checks",
            "not_a_server_error,content_type_conformance",
            "--max-examples",
            "60",
            "--phases",
            "examples,coverage,fuzzing",
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
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=900,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, (
        report + "\n--- api log ---\n" + stack.processes[0].output()[-4000:]
    )
