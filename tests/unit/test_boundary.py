"""The boundary: the processes that coordinate never import the scientific stack.

A worker's main process, the client, the CLI and the job service import zootrain.spec and the
records (pydantic only); scikit-learn, scipy, pandas and numpy are imported by the children
that train, predict or read uploads (zootrain.forkserver), never by them. Each import runs in a
fresh interpreter: this test process has them all loaded already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("sklearn", "scipy", "pandas", "numpy", "pyarrow")
MODULES = (
    "workers.__main__",  # the worker's main process (python -m workers)
    "workers.worker",
    "zootrain.client",
    "zootrain.cli",
    "app.main",  # the job service (uvicorn app.main:app)
    "zootrain.spec",
    "zootrain.records",
)


def imported_heavy(module: str, heavy: tuple[str, ...] = HEAVY) -> list[str]:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    found: list[str] = json.loads(done.stdout.splitlines()[-1])
    return found


@pytest.mark.parametrize("module", MODULES)
def test_importing_leaves_the_scientific_stack_out(module: str) -> None:
    assert imported_heavy(module) == []


def test_the_check_sees_an_import_when_there_is_one() -> None:
    # The training side does import them: the check above can fail.
    assert "sklearn" in imported_heavy("workers.train_child")


# What the CLI loads only inside the commands that use it: its start-up (a goal of 0.25 s, measured
# by bench/cli_start.py) pays for typer and rich, not for the client, pydantic or kazoo.
CLI_LAZY = ("httpx", "pydantic", "kazoo", "yaml", "zootrain.client", "zootrain.settings")


def test_the_cli_loads_the_client_and_kazoo_only_in_the_commands_that_use_them() -> None:
    assert imported_heavy("zootrain.cli", CLI_LAZY) == []
    assert imported_heavy("zootrain.client", CLI_LAZY) != []  # the check can fail
