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


def test_object_store_profile_is_valid_and_points_the_services_at_minio() -> None:
    validator = shutil.which("docker-compose")
    assert validator, "docker-compose (Debian package) is needed: `make test` installs it"
    env_file = COMPOSE.parent / "object-store.env"
    env = {**os.environ, **REQUIRED}
    base = [validator, "--env-file", str(env_file), "-f", str(COMPOSE), "config"]
    checked = subprocess.run([*base, "-q"], capture_output=True, text=True, env=env)
    assert checked.returncode == 0, checked.stderr
    shown = subprocess.run(base, capture_output=True, text=True, env=env, check=True).stdout
    services = yaml.safe_load(shown)["services"]
    assert {"minio", "minio-bucket"} <= set(services)
    settings = dict(
        line.split("=", 1)
        for line in env_file.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    bucket = settings["ZOOTRAIN_ARTIFACTS"].removeprefix("s3://").split("/")[0]
    assert services["minio-bucket"]["entrypoint"][-1] == f"local/{bucket}"
    for name in ("api", "worker"):
        environment = services[name]["environment"]
        assert environment["ZOOTRAIN_ARTIFACTS"] == settings["ZOOTRAIN_ARTIFACTS"]
        assert environment["AWS_ENDPOINT_URL"] == "http://minio:9000"
    # Without the profile, MinIO does not start (it is only in that profile) and the services
    # keep the shared volume.
    plain = subprocess.run(
        [validator, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    default = yaml.safe_load(plain)["services"]
    assert default["minio"]["profiles"] == default["minio-bucket"]["profiles"] == ["object-store"]
    assert default["worker"]["environment"]["ZOOTRAIN_ARTIFACTS"] == "/data/artifacts"


# Variables of the compose file itself (interpolated, never passed to a service as such).
COMPOSE_VARIABLES = {"ZOOTRAIN_API_PORT", "ZOOKEEPER_IMAGE", "MINIO_IMAGE", "MC_IMAGE"}


def test_compose_names_only_real_settings() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    known = {f"ZOOTRAIN_{field.upper()}" for field in Settings.model_fields}
    passed = {name for service in services.values() for name in service.get("environment", {})}
    settings = {name for name in passed if name.startswith("ZOOTRAIN_")}
    assert settings, "the compose file configures nothing"
    assert settings <= known, f"unknown settings in the compose file: {sorted(settings - known)}"
    # What the file reads from the shell: a variable it passes on, or one of its own.
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text()))
    stray = interpolated - passed - COMPOSE_VARIABLES
    assert not stray, f"variables that are neither settings nor the file's own: {sorted(stray)}"


def test_compose_publishes_only_the_api_on_loopback() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    # The job service, and the object-store profile's MinIO console.
    assert set(published) <= {"api", "minio"} and "api" in published, published
    for port in [p for ports in published.values() for p in ports]:
        assert str(port).startswith("127.0.0.1:"), f"{port}: published beyond the host's loopback"


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


def test_documented_compose_commands_are_what_compose_test_runs() -> None:
    """docs/compose.md's commands are the commands `make compose-test` runs (tests/compose)."""
    page = (COMPOSE.parents[1] / "docs" / "compose.md").read_text()
    section = page[page.index("# Docker compose") :]
    block = section[section.index("```sh") + len("```sh") : section.index("```\n", 10)]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    run = (COMPOSE.parents[1] / "tests" / "compose" / "run.sh").read_text()
    compose_calls = [
        c.removeprefix("docker compose -f docker/docker-compose.yml ")
        for c in commands
        if c.startswith("docker compose -f docker/docker-compose.yml ")
    ]
    assert compose_calls == ["up -d", "up -d --scale worker=3", "down -v"], compose_calls
    for call in compose_calls:
        # (compose "$@" …: the same command, with options such as --env-file passed on)
        assert re.search(rf'^\s*compose (?:"\$@" )?{re.escape(call)}$', run, re.M), (
            f"run.sh never runs {call}"
        )
    build = next(c for c in commands if c.startswith("docker build"))
    assert build == "docker build -f docker/Dockerfile -t zootrain:latest ."
    assert re.search(
        r" build --force-rm -f docker/Dockerfile --build-arg BASE_IMAGE=\S+\s*\\?\s*"
        r"-t \"\$APP_IMAGE\" \.",
        run,
    )
    assert any("zootrain token new admin --scopes admin" in c for c in commands)
    assert "zootrain token new admin --scopes admin --json" in run
    if any(c.startswith("export ZOOTRAIN_ZK_AUTH=") for c in commands):
        assert re.search(r"^\s*ZOOTRAIN_ZK_AUTH=\"zootrain:\$\(.*secrets\.token_urlsafe", run, re.M)
