#!/usr/bin/env bash
# Install Debian's ZooKeeper (and the Java it runs on) if this machine does not have it yet.
set -euo pipefail
jar=/usr/share/java/zookeeper.jar
if [ -f "$jar" ] && command -v java >/dev/null; then
  exit 0
fi
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
echo "installing Debian's zookeeper package"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends zookeeper >/dev/null
# The package's own service is not wanted: the stack and the tests start their own servers.
if command -v systemctl >/dev/null && systemctl is-active --quiet zookeeper 2>/dev/null; then
  as_root systemctl disable --now zookeeper || true
fi
test -f "$jar"
