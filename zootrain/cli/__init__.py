"""The ``zootrain`` command: submit, follow and inspect training jobs; list models; predict.

Every command prints tables for people, or with ``--json`` machine-readable JSON on stdout and
nothing else. The service is ``--url`` or ``$ZOOTRAIN_URL`` (default http://127.0.0.1:8000); the
API token is ``--token`` or ``$ZOOTRAIN_TOKEN``. ``zootrain token new`` makes a token (offline).
Errors are one red line on stderr and exit code 1; usage errors exit 2; a job followed with
``submit --wait`` or ``watch`` that ends failed or cancelled exits 1 too.

The package: ``plumbing`` (the Typer apps, shared options, errors as one line, sessions, JSON
output), ``render`` (tables for people) and one module a command group, each registering its
commands on import (below, in the order ``--help`` lists them).
"""

from __future__ import annotations

# Each module registers its commands on import, and --help lists them in that order.
# isort: off
from zootrain.cli import submit, jobs, models, aliases, workers, config, datasets, tokens, zk_admin

# isort: on
from zootrain.cli.plumbing import app

__all__ = [
    "aliases",
    "app",
    "config",
    "datasets",
    "jobs",
    "models",
    "submit",
    "tokens",
    "workers",
    "zk_admin",
]
