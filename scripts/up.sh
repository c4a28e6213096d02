#!/usr/bin/env bash
# Start a standalone ZooKeeper, the job service and two workers in the background.
# PIDs and logs go under var/; running it again starts only what is not running.
# The first run makes an admin API token, kept in var/token (yours only) and reused after: the
# job service gets only its hash (ZOOTRAIN_TOKENS), and this script prints the token. It also
# makes ZooKeeper credentials, kept in var/zk-auth (yours only), which every process it starts
# gets as ZOOTRAIN_ZK_AUTH: each znode is then closed to every ZooKeeper client without them.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh

mkdir -p "$VAR/run" "$VAR/log" "$VAR/zookeeper/data" "$ZOOTRAIN_ARTIFACTS"

if ! zk_ok; then
  if running zookeeper; then stop_pid zookeeper; fi
  cat > "$VAR/zookeeper/zoo.cfg" <<CFG
tickTime=2000
dataDir=$VAR_DIR/zookeeper/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
admin.enableServer=false
4lw.commands.whitelist=*
maxSessionTimeout=60000
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
CFG
  start zookeeper java -Xmx512m -Dzookeeper.log.dir="$VAR_DIR/log" \
    -cp /usr/share/java/zookeeper.jar org.apache.zookeeper.server.quorum.QuorumPeerMain \
    "$VAR/zookeeper/zoo.cfg"
  wait_until "ZooKeeper on 127.0.0.1:$ZK_PORT" zk_ok
fi

# ZooKeeper credentials: yours if ZOOTRAIN_ZK_AUTH is set, else the ones made here the first time.
new_credentials=false
if [ -z "${ZOOTRAIN_ZK_AUTH:-}" ]; then
  if [ ! -s "$ZK_AUTH_FILE" ]; then
    (umask 077 && "$BIN/python" -c 'import secrets; print("zootrain:" + secrets.token_urlsafe(24))' \
      > "$ZK_AUTH_FILE.new")
    mv "$ZK_AUTH_FILE.new" "$ZK_AUTH_FILE"
    new_credentials=true
    echo "made ZooKeeper credentials in $ZK_AUTH_FILE"
  fi
  chmod 600 "$ZK_AUTH_FILE"
  ZOOTRAIN_ZK_AUTH=$(cat "$ZK_AUTH_FILE")
  export ZOOTRAIN_ZK_AUTH  # for every process started below (an environment, never argv)
fi
if $new_credentials; then
  # Processes of an earlier `make up` run without credentials: they would keep making open nodes
  # and could not read the closed ones. Start them again with the credentials.
  for pidfile in "$VAR"/run/worker-*.pid "$VAR"/run/api.pid; do
    if [ -e "$pidfile" ]; then stop_pid "$(basename "$pidfile" .pid)"; fi
  done
  # Nodes made before the credentials existed are closed too (nothing to do on a first run).
  "$BIN/zootrain" zk secure
fi

if [ ! -s "$TOKEN_FILE" ]; then
  (umask 077 && "$BIN/python" -c 'from zootrain.auth import new_token; print(new_token())' \
    > "$TOKEN_FILE.new")
  mv "$TOKEN_FILE.new" "$TOKEN_FILE"
  echo "made a new admin API token in $TOKEN_FILE"
fi
chmod 600 "$TOKEN_FILE"
ZOOTRAIN_TOKEN=$(cat "$TOKEN_FILE")  # for this script's own requests (not exported to services)
# The name:sha256:scopes entry; the token goes in on stdin, never on a command line.
entry=$("$BIN/python" -c 'import sys; from zootrain.auth import config_entry
print(config_entry("admin", sys.stdin.read().strip(), ["admin"]))' < "$TOKEN_FILE")

if ! running api; then
  # Tokens you configured yourself (ZOOTRAIN_TOKENS, ZOOTRAIN_TOKENS_FILE) are kept as well.
  ZOOTRAIN_TOKENS="$entry${ZOOTRAIN_TOKENS:+$'\n'$ZOOTRAIN_TOKENS}" \
    start api "$BIN/uvicorn" app.main:app --host 127.0.0.1 --port "$API_PORT" \
      --workers "${WEB_CONCURRENCY:-2}"
fi
wait_until "the job service on $API_URL" api_ready
if ! token_accepted; then
  echo "the job service on $API_URL does not accept the token in $TOKEN_FILE" \
    "(was it started with other tokens?): run make down, then make up" >&2
  exit 1
fi

for n in 1 2; do
  running "worker-$n" || ZOOTRAIN_METRICS_PORT=$((METRICS_BASE + n)) start "worker-$n" "$BIN/python" -m workers
done
wait_until "two workers registered" workers_ready 2

echo "zootrain is up: API $API_URL, ZooKeeper 127.0.0.1:$ZK_PORT, logs in $VAR/log"
if [ -s "$ZK_AUTH_FILE" ]; then
  echo "ZooKeeper's znodes are closed to clients without the credentials in $ZK_AUTH_FILE"
  echo "  (zkCli.sh: addauth digest \$(cat $ZK_AUTH_FILE); zootrain zk/token commands: ZOOTRAIN_ZK_AUTH)"
fi
echo
echo "API token (admin scope; kept in $TOKEN_FILE, readable by you only):"
echo "  $ZOOTRAIN_TOKEN"
echo "Give it to the CLI, the Python client and the README's curl lines from your shell:"
echo "  export ZOOTRAIN_TOKEN=\$(cat $TOKEN_FILE)"
echo "The dashboard, $API_URL/ui/, asks for it once."
echo
