"""The docker compose stack: a valid file that configures the services with settings that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from zootrain.settings import Settings

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "docker-compose.yml"


REQUIRED = {"ZOOTRAIN_TOKENS": "ci:" + "0" * 64 + ":admin", "ZOOTRAIN_ZK_AUTH": "zootrain:s3cret"}


def test_compose_file_is_valid() -> None:
    validator = shutil.which("docker-compose")
    assert validator, "docker-compose (Debian package) is needed: `make test` installs it"
    # The file requires ZOOTRAIN_TOKENS (the hashed entries) and ZOOTRAIN_ZK_AUTH (ZooKeeper's
    # credentials): without either, compose must refuse, naming it.
    env = {k: v for k, v in os.environ.items() if k not in REQUIRED}
    command = [validator, "-f", str(COMPOSE), "config", "-q"]
    for missing in REQUIRED:
        given = {k: v for k, v in REQUIRED.items() if k != missing}
        refused = subprocess.run(command, capture_output=True, text=True, env={**env, **given})
        assert refused.returncode != 0 and missing in refused.stderr, (missing, refused.stderr)
    result = subprocess.run(command, capture_output=True, text=True, env={**env, **REQUIRED})
    assert result.returncode == 0, result.stderr


def test_every_zootrain_process_gets_the_zookeeper_credentials() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("api", "worker"):
        credentials = services[name]["environment"]["ZOOTRAIN_ZK_AUTH"]
        assert credentials.startswith("${ZOOTRAIN_ZK_AUTH:?"), (name, credentials)


def test_compose_names_only_real_settings() -> None:
    names = set(re.findall(r"\bZOOTRAIN_[A-Z_]+\b", COMPOSE.read_text()))
    known = {f"ZOOTRAIN_{field.upper()}" for field in Settings.model_fields}
    assert names, "the compose file configures nothing"
    assert names <= known, f"unknown settings in the compose file: {sorted(names - known)}"


def test_compose_topology() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    zookeepers = [s for s in services if s.startswith("zk")]
    assert len(zookeepers) == 3
    hosts = services["api"]["environment"]["ZOOTRAIN_ZK_HOSTS"].split(",")
    assert sorted(h.split(":")[0] for h in hosts) == sorted(zookeepers)
    assert services["worker"]["command"] == ["python", "-m", "workers"]
    assert "container_name" not in services["worker"], "workers must scale with --scale"
    for name in ("api", "worker"):
        assert "healthcheck" in services[name] and services[name]["restart"]
