#!/usr/bin/env bash
# Start a standalone ZooKeeper, the job service and two workers in the background.
# PIDs and logs go under var/; running it again starts only what is not running.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

mkdir -p "$VAR/run" "$VAR/log" "$VAR/zookeeper/data" "$ZOOTRAIN_ARTIFACTS"

if ! zk_ok; then
  if running zookeeper; then stop_pid zookeeper; fi
  cat > "$VAR/zookeeper/zoo.cfg" <<CFG
tickTime=2000
dataDir=$PWD/$VAR/zookeeper/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
maxSessionTimeout=60000
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CFG
  start zookeeper java -Xmx512m -Dzookeeper.log.dir="$PWD/$VAR/log" \
    -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$VAR/zookeeper/zoo.cfg"
  wait_until "ZooKeeper on 127.0.0.1:$ZK_PORT" zk_ok
fi

if ! running api; then
  start api "$BIN/uvicorn" app.main:app --host 127.0.0.1 --port "$API_PORT"
fi
wait_until "the job service on $API_URL" api_ready

for n in 1 2; do
  running "worker-$n" || ZOOTRAIN_METRICS_PORT=$((9100 + n)) start "worker-$n" "$BIN/python" -m workers
done
wait_until "two workers registered" workers_ready 2

echo "zootrain is up: API $API_URL, ZooKeeper 127.0.0.1:$ZK_PORT, logs in $VAR/log"
