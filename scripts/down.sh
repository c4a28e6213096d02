#!/usr/bin/env bash
# Stop what `make up` started, by the PIDs it recorded: workers first, ZooKeeper last.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
for pidfile in "$VAR"/run/worker-*.pid; do
  [ -e "$pidfile" ] || continue
  stop_pid "$(basename "$pidfile" .pid)"
done
stop_pid api
stop_pid zookeeper
if [ -s "$TOKEN_FILE" ]; then
  echo "the API token stays in $TOKEN_FILE for the next make up (make clean deletes it)"
fi
if [ -s "$ZK_AUTH_FILE" ]; then
  echo "the ZooKeeper credentials stay in $ZK_AUTH_FILE, with the data they protect"
fi
