#!/usr/bin/env bash
# Install the Debian packages named on the command line that this machine lacks:
#   zookeeper       the server (and the Java it runs on) for `make up` and the tests
#   docker-compose  the compose file validator used by the tests (no engine needed), and
#                   Compose itself for make compose-test
#   docker.io       the Docker engine for make compose-test (unless one is installed already)
#   debootstrap     make compose-test's Python base image where no registry is reachable
#   chromium        the browser the dashboard test drives (Playwright, never a downloaded one)
set -euo pipefail
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for package in "$@"; do
  case $package in
    zookeeper) [ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null || missing+=(zookeeper) ;;
    docker-compose) command -v docker-compose >/dev/null || missing+=(docker-compose) ;;
    # A docker CLI alone is not an engine: the daemon is what is needed.
    docker.io) command -v dockerd >/dev/null || [ -x /usr/sbin/dockerd ] || missing+=(docker.io) ;;
    chromium) command -v chromium >/dev/null || missing+=(chromium) ;;
    *) dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package") ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The zookeeper package's own service is not wanted: the stack and the tests start their own.
if command -v systemctl >/dev/null && systemctl is-active --quiet zookeeper 2>/dev/null; then
  as_root systemctl disable --now zookeeper || true
fi
