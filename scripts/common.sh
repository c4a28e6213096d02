# Shared by up.sh, down.sh and demo.sh.
VAR=${ZOOTRAIN_VAR:-var}
case $VAR in /*) VAR_DIR=$VAR ;; *) VAR_DIR=$PWD/$VAR ;; esac
BIN=${VENV:-.venv}/bin
ZK_PORT=${ZOOTRAIN_ZK_PORT:-2181}
API_PORT=${ZOOTRAIN_API_PORT:-8000}
API_URL=${ZOOTRAIN_URL:-http://127.0.0.1:$API_PORT}
export ZOOTRAIN_ZK_HOSTS=${ZOOTRAIN_ZK_HOSTS:-127.0.0.1:$ZK_PORT}
export ZOOTRAIN_ARTIFACTS=${ZOOTRAIN_ARTIFACTS:-$VAR_DIR/artifacts}
# Workers serve their metrics on consecutive ports from here (worker-1 on BASE+1).
METRICS_BASE=${ZOOTRAIN_WORKER_METRICS_BASE:-9100}
# The admin API token `make up` made (only its hash goes to the job service).
TOKEN_FILE=$VAR/token
# The ZooKeeper credentials (user:password) `make up` made: every process it starts gets them.
ZK_AUTH_FILE=$VAR/zk-auth

pidfile() { echo "$VAR/run/$1.pid"; }

running() {
  local file; file=$(pidfile "$1")
  [ -f "$file" ] && kill -0 "$(cat "$file")" 2>/dev/null
}

start() {
  local name=$1; shift
  # setsid: the process outlives this shell and `make`; its PID is the group to stop later.
  # No service gets the client's token (a user's exported ZOOTRAIN_TOKEN): they need none.
  env -u ZOOTRAIN_TOKEN setsid nohup "$@" >>"$VAR/log/$name.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$name")"
  echo "started $name (pid $!)"
}

stop_pid() {
  local name=$1 file pid
  file=$(pidfile "$name")
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$file"
}

zk_ok() {
  "$BIN/python" - "$ZK_PORT" <<'PY' 2>/dev/null
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
    s.sendall(b"ruok")
    sys.exit(0 if s.recv(4) == b"imok" else 1)
PY
}

api_ready() { curl -fsS -o /dev/null "$API_URL/readyz" 2>/dev/null; }

# curl with `Authorization: Bearer $ZOOTRAIN_TOKEN`. The header comes from a file descriptor
# (curl -H @file), not the command line, so the token never shows in `ps`.
api_curl() {
  curl -H @<(printf 'Authorization: Bearer %s\n' "${ZOOTRAIN_TOKEN:-}") "$@"
}

token_accepted() { api_curl -fsS -o /dev/null "$API_URL/v1/workers" 2>/dev/null; }

workers_ready() {
  local want=$1
  [ "$(api_curl -fsS "$API_URL/v1/workers" 2>/dev/null | "$BIN/python" -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null)" -ge "$want" ] 2>/dev/null
}

wait_until() {
  local what=$1; shift
  for _ in $(seq 1 600); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  echo "timed out waiting for $what; see $VAR/log/" >&2
  return 1
}
