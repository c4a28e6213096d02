"""The version is written once (zootrain/__init__.py) and every place that shows it agrees."""

from __future__ import annotations

import importlib.metadata
import json
import tomllib
from pathlib import Path

import httpx
from typer.testing import CliRunner

from zootrain import __version__, cli
from zootrain.client import Client

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_reads_the_version_from_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "the version is written in zootrain/__init__.py"
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "zootrain.__version__"}
    # What pip installed from it (make install reinstalls whenever pyproject.toml changes).
    assert importlib.metadata.version("zootrain") == __version__


def test_the_cli_prints_the_version() -> None:
    result = CliRunner().invoke(cli.app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"zootrain {__version__}"


def test_the_client_names_its_version() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["User-Agent"])
        return httpx.Response(200, json=[])

    with Client("http://zootrain.test", transport=httpx.MockTransport(handler)) as client:
        client.workers()
    assert seen == [f"zootrain-client/{__version__}"]


def test_openapi_documents_the_version() -> None:
    document = json.loads((ROOT / "openapi.json").read_text())
    assert document["info"]["version"] == __version__
