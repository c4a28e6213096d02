#!/usr/bin/env bash
# make compose-test: docker/docker-compose.yml run for real, with the commands of docs/compose.md.
#
#  1. the engine: Debian's docker.io and docker-compose when missing; dockerd started when none
#     runs (and stopped again at the end)
#  2. the images: where no registry is reachable (ZOOTRAIN_COMPOSE_IMAGES=local, the default) a
#     Python base made from Debian's packages and a stand-in for zookeeper:3.8
#     (tests/compose/images.sh); with ZOOTRAIN_COMPOSE_IMAGES=registry, python:3.11-slim and the
#     official zookeeper:3.8. Then the app image: docker/Dockerfile from the wheelhouse.
#  3. the stack: up -d, every healthcheck healthy, the curl walkthrough with a token made by
#     `zootrain token new`, --scale worker=3, a job during which a ZooKeeper container is
#     stopped and a busy worker's container killed, every job finished and the model served,
#     down -v with nothing left behind.
#
# It talks to the stack only through the job service's port, published on 127.0.0.1, and through
# `docker exec` into the project's own containers. A failing step stops the run with the
# containers' state and logs; whatever the run started is stopped on any exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

BIN=${VENV:-.venv}/bin
MODE=${ZOOTRAIN_COMPOSE_IMAGES:-local}
export COMPOSE_PROJECT_NAME=${COMPOSE_PROJECT_NAME:-zootrain-compose-test}
export BASE_IMAGE_TAG=zootrain-compose/python:3.11-bookworm
export ZOOKEEPER_IMAGE_TAG=zootrain-compose/zookeeper:3.8-debian
APP_IMAGE=zootrain:latest
# Seconds to wait for anything the stack should do by itself (machines under load are slow).
PATIENCE=${ZOOTRAIN_COMPOSE_PATIENCE:-240}

case $MODE in
  local | registry) ;;
  *) echo "ZOOTRAIN_COMPOSE_IMAGES is local (images built here) or registry, not '$MODE'" >&2
     exit 2 ;;
esac
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
WORK=$(mktemp -d -t zootrain-compose.XXXXXX)
: > "$WORK/unavailable"

# ---------------------------------------------------------------------------------------------
# Steps, their times, and running some of them side by side

STEPS=()       # "name|seconds" in the order they finished
BACKGROUND=()  # "name|pid" of steps running in the background
DOCKERD_PID=""
STACK_UP=""

now() { echo "${EPOCHREALTIME/./}"; }  # microseconds
seconds() {  # seconds FROM TO, with one decimal
  local us=$(($2 - $1))
  printf '%d.%d' $((us / 1000000)) $((us / 100000 % 10))
}
since() { seconds "$1" "$(now)"; }
say() { printf '%s\n' "$*"; }

# step NAME COMMAND...: run it here and now, and time it.
step() {
  local name=$1 start
  shift
  say "==> $name"
  CURRENT=$name
  start=$(now)
  "$@"
  STEPS+=("$name|$(since "$start")")
  say "    $name: ${STEPS[-1]#*|} s"
}

# begin NAME COMMAND...: start an external command in the background, in its own session (so
# that a failure elsewhere can stop it and everything it started), its output in a log.
begin() {
  local name=$1 file
  shift
  file=$WORK/${name//[^a-z0-9]/_}
  say "==> $name (in the background)"
  setsid bash -c 'start=${EPOCHREALTIME/./}; "$@"; rc=$?
    echo "$rc $start ${EPOCHREALTIME/./}" > "$0.done"; exit $rc' "$file" "$@" \
    > "$file.log" 2>&1 < /dev/null &
  BACKGROUND+=("$name|$!")
}

# finish NAME: wait for a background step; its time is its own, not the wait's.
finish() {
  local name=$1 entry pid rc start end file
  file=$WORK/${name//[^a-z0-9]/_}
  for entry in "${BACKGROUND[@]}"; do
    [ "${entry%|*}" = "$name" ] && pid=${entry#*|}
  done
  wait "$pid" || true
  BACKGROUND=("${BACKGROUND[@]/"$name|$pid"/}")
  if [ ! -s "$file.done" ]; then
    tail -n 40 "$file.log" >&2
    fail "$name stopped without finishing (log above)"
  fi
  read -r rc start end < "$file.done"
  if [ "$rc" != 0 ]; then
    tail -n 60 "$file.log" >&2
    fail "$name failed (exit $rc; the end of its log is above)"
  fi
  STEPS+=("$name|$(seconds "$start" "$end")")
  say "    $name: ${STEPS[-1]#*|} s"
}

# fail MESSAGE: stop the run, from wherever (a failure inside $(...) stops the script too).
CURRENT="start"
fail() {
  say "" "compose-test FAILED in \"$CURRENT\": $*" >&2
  touch "$WORK/failed"
  [ "$BASHPID" = "$$" ] || kill -USR1 "$$"
  exit 1
}

summary() {
  local entry
  say "" "step times (seconds; steps marked * ran in the background beside others):"
  for entry in "${STEPS[@]}"; do
    printf '  %-44s %7s\n' "${entry%|*}" "${entry#*|}"
  done
  printf '  %-44s %7s\n' "whole run" "$(since "$RUN_START")"
}

# ---------------------------------------------------------------------------------------------
# Cleanup: whatever happens, leave no container, volume, network, background step or daemon

compose() { "${COMPOSE[@]}" -f docker/docker-compose.yml "$@"; }

diagnose() {
  say "" "---- containers of $COMPOSE_PROJECT_NAME" >&2
  compose ps >&2 || true
  local container
  for container in $(compose ps -q 2>/dev/null); do
    say "" "---- $(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}health={{.State.Health.Status}}{{end}}' "$container")" >&2
    docker inspect -f '{{json .State.Health}}' "$container" | "$BIN/python" -c '
import json, sys
for check in ((json.load(sys.stdin) or {}).get("Log") or [])[-3:]:
    last = (check["Output"].strip().splitlines() or [""])[-1]
    print("  healthcheck at %s: exit %s %s" % (check["Start"][11:19], check["ExitCode"], last))' >&2 || true
    docker logs --tail 60 "$container" 2>&1 | sed 's/^/  | /' >&2 || true
  done
}

kill_tree() {  # a background step's whole session
  kill -TERM -- "-$1" 2>/dev/null || true
}

cleanup() {
  local rc=$? entry
  set +e  # clean up as much as can be, whatever fails
  trap - EXIT INT TERM USR1
  if [ "$rc" != 0 ] && [ ! -e "$WORK/failed" ]; then
    say "" "compose-test FAILED in \"$CURRENT\": a command exited $rc (see above)" >&2
  fi
  for entry in "${BACKGROUND[@]}"; do
    [ -n "$entry" ] && kill_tree "${entry#*|}"
  done
  if [ -n "$STACK_UP" ]; then
    [ "$rc" != 0 ] && diagnose
    say "==> cleanup: down -v"
    compose down -v --remove-orphans --timeout 10 > "$WORK/cleanup.log" 2>&1 \
      || cat "$WORK/cleanup.log" >&2
  fi
  if [ -n "$DOCKERD_PID" ]; then
    [ "$rc" != 0 ] && { say "---- dockerd (the end of its log)"; tail -n 20 "$WORK/dockerd.log"; } >&2
    say "==> stopping the dockerd this run started (pid $DOCKERD_PID)"
    as_root kill -TERM "$DOCKERD_PID"
    for _ in $(seq 1 150); do as_root kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.2; done
    as_root kill -KILL "$DOCKERD_PID" 2>/dev/null
  fi
  # debootstrap mounts /proc and /sys in its tree; a stopped one may leave them behind.
  local mount
  for mount in $(awk -v work="$WORK/" 'index($2, work) == 1 {print $2}' /proc/mounts | sort -r); do
    as_root umount -l "$mount"
  done
  as_root rm -rf --one-file-system "$WORK"
  [ ${#STEPS[@]} -gt 0 ] && summary
  if [ "$rc" = 0 ]; then say "" "compose-test passed"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 1' USR1  # fail() called in a subshell

# ---------------------------------------------------------------------------------------------
# 1. The engine

ensure_packages() { scripts/ensure-packages.sh "$@"; }

start_dockerd() {
  if docker info > /dev/null 2>&1; then
    say "    a Docker engine is running already: using it (and leaving it running)"
    return
  fi
  if pgrep -x dockerd > /dev/null; then
    docker info 2>&1 | tail -n 3 >&2
    fail "a dockerd runs but does not answer this user (root, sudo or the docker group needed)"
  fi
  local dockerd
  dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
  # Its own session: stopped by this script's cleanup, not by a Ctrl-C meant for the script.
  # (Through sudo, the PID is sudo's, which passes the signal on.)
  if [ "$(id -u)" = 0 ]; then
    setsid "$dockerd" > "$WORK/dockerd.log" 2>&1 < /dev/null &
  else
    sudo setsid "$dockerd" > "$WORK/dockerd.log" 2>&1 < /dev/null &
  fi
  DOCKERD_PID=$!
  for _ in $(seq 1 150); do
    docker info > /dev/null 2>&1 && return
    if ! as_root kill -0 "$DOCKERD_PID" 2>/dev/null; then
      tail -n 30 "$WORK/dockerd.log" >&2
      DOCKERD_PID=""
      fail "dockerd exited at start-up (its log is above): this machine cannot run containers"
    fi
    sleep 0.2
  done
  fail "dockerd did not answer within 30 s (log: $WORK/dockerd.log)"
}

pick_compose() {
  if docker compose version > /dev/null 2>&1; then
    COMPOSE=(docker compose)
  else
    ensure_packages docker-compose
    COMPOSE=(docker-compose)
  fi
  say "    compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || true))"
}

# ---------------------------------------------------------------------------------------------
# 2. The images

base_is_current() {
  [ -z "${ZOOTRAIN_COMPOSE_FRESH:-}" ] \
    && [ "$(docker image inspect -f '{{index .Config.Labels "org.zootrain.recipe"}}' \
              "$BASE_IMAGE_TAG" 2>/dev/null)" = "$(tests/compose/images.sh recipe)" ]
}

# The docker CLI that builds with BuildKit (twice as fast as the legacy builder here, mostly in
# the runtime stage's copy of the virtual environment): one with the buildx plugin, where
# BuildKit is the default; else a CLI older than 23 (Debian's docker.io, /usr/bin/docker), which
# has it built in behind DOCKER_BUILDKIT=1; else the legacy builder, which builds the same image.
pick_builder() {
  local cli version
  if docker buildx version > /dev/null 2>&1; then
    BUILDER=(docker)
    return
  fi
  for cli in docker /usr/bin/docker; do
    version=$("$cli" version -f '{{.Client.Version}}' 2>/dev/null) || continue
    if [ "${version%%.*}" -lt 23 ]; then
      BUILDER=(env DOCKER_BUILDKIT=1 "$cli")
      return
    fi
  done
  BUILDER=(docker)
}

build_app() {
  # docs/compose.md's build command; --force-rm so that a failed build leaves no container behind.
  "${BUILDER[@]}" build --force-rm -f docker/Dockerfile --build-arg BASE_IMAGE="$1" \
    -t "$APP_IMAGE" .
}

# ---------------------------------------------------------------------------------------------
# 3. The stack

json() { "$BIN/python" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# api METHOD PATH [curl options]: the body of a 2xx answer; anything else fails the run, except
# a 503, which the service answers (with Retry-After: 1) while its ZooKeeper connection moves to
# another node: that is retried, as a client should, and counted.
api() {
  local answer status deadline=$((SECONDS + 60))
  while :; do
    answer=$(curl -sS -X "$1" "$API$2" -H "Authorization: Bearer $ZOOTRAIN_TOKEN" \
      -w '\n%{http_code}' "${@:3}") || fail "$1 $2: no answer from $API"
    status=${answer##*$'\n'}
    answer=${answer%$'\n'*}
    if [ "$status" != 503 ] || [ "$SECONDS" -ge "$deadline" ]; then break; fi
    echo "$1 $2" >> "$WORK/unavailable"  # a file: api runs in subshells too
    sleep 1
  done
  [ "${status:0:1}" = 2 ] || fail "$1 $2: HTTP $status: $answer"
  printf '%s\n' "$answer"
}

# wait_healthy SECONDS: every container of the project running and healthy, or, for a one-off
# job (no healthcheck, never restarted), finished with exit code 0.
wait_healthy() {
  local deadline=$((SECONDS + $1)) states bad
  while :; do
    states=$(compose ps -q | xargs -r docker inspect -f \
      '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}}')
    bad=$(awk '!($2 == "running" && $3 == "healthy") \
               && !($2 == "exited" && $3 == "none" && $4 == 0 && $5 == "no")' <<< "$states")
    [ -n "$states" ] && [ -z "$bad" ] && break
    if grep -q -E ' (exited|dead) | unhealthy ' <<< "$bad"; then
      fail "containers failed: $(tr '\n' ';' <<< "$bad")"
    fi
    [ "$SECONDS" -lt "$deadline" ] || fail "not healthy after $1 s: $(tr '\n' ';' <<< "$bad")"
    sleep 1
  done
  say "    healthy: $(awk '{print $1}' <<< "$states" | tr -d / | tr '\n' ' ')"
}

# wait_job ID: the job's final state (printed); waits for a terminal state.
wait_job() {
  local deadline=$((SECONDS + PATIENCE)) state
  while :; do
    state=$(api GET "/v1/jobs/$1" | json 'd["state"]')
    case $state in succeeded | failed | cancelled) break ;; esac
    [ "$SECONDS" -lt "$deadline" ] || fail "job $1 still $state after $PATIENCE s"
    sleep 0.5
  done
  echo "$state"
}

expect_succeeded() {
  local state
  state=$(wait_job "$1")
  [ "$state" = succeeded ] \
    || fail "job $1 ended $state: $(api GET "/v1/jobs/$1" | json 'd.get("error")')"
}

credentials() {
  # docs/compose.md's `zootrain token new`, run in the image just built (no network needed); --json
  # is the same output for a script to read.
  local made
  made=$(docker run --rm --network none "$APP_IMAGE" zootrain token new admin --scopes admin --json)
  ZOOTRAIN_TOKEN=$(json 'd["token"]' <<< "$made")
  ZOOTRAIN_TOKENS=$(json 'd["entry"]' <<< "$made")
  # ZooKeeper's credentials, the same for every process.
  ZOOTRAIN_ZK_AUTH="zootrain:$("$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))')"
  export ZOOTRAIN_TOKENS ZOOTRAIN_ZK_AUTH
  say "    token made for admin; ZOOTRAIN_TOKENS=$ZOOTRAIN_TOKENS; ZooKeeper credentials made"
}

pick_port() {
  # 8000 as in docs/compose.md unless something else holds it (another stack on this machine).
  ZOOTRAIN_API_PORT=${ZOOTRAIN_API_PORT:-$("$BIN/python" - <<'PY'
import socket
with socket.socket() as s:
    try:
        s.bind(("127.0.0.1", 8000))
    except OSError:
        s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
)}
  export ZOOTRAIN_API_PORT
  API=http://127.0.0.1:$ZOOTRAIN_API_PORT
}

up() {
  # A run that died before its cleanup may have left the project behind.
  compose down -v --remove-orphans --timeout 5 > /dev/null 2>&1 || true
  STACK_UP=1
  compose up -d
  wait_healthy "$PATIENCE"
}

walkthrough() {
  # The README's curl walkthrough, as written there.
  local job id version view
  job=$(api POST /v1/jobs -H 'Content-Type: application/json' -H 'Idempotency-Key: my-first-job' -d '{
    "model_name": "digits-forest",
    "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 50, "max_depth": 12},
    "dataset": {"kind": "builtin", "name": "digits"},
    "shards": 4,
    "partition": "random",
    "test_size": 0.2,
    "random_state": 7,
    "max_attempts": 3
  }')
  id=$(json 'd["id"]' <<< "$job")
  say "    submitted job $id"
  expect_succeeded "$id"
  version=$(api GET "/v1/jobs/$id" | json 'd["model"]["version"]')
  view=$(api GET "/v1/models/digits-forest/versions/$version")
  say "    job $id succeeded: digits-forest version $version," \
    "accuracy $(json '"%.3f" % d["metrics"]["accuracy"]' <<< "$view")"
  api POST /v1/models/digits-forest/predict -H 'Content-Type: application/json' \
    -d '{"instances": [[0,0,5,13,9,1,0,0,0,0,13,15,10,15,5,0,0,3,15,2,0,11,8,0,0,4,12,0,0,8,8,0,0,5,8,0,0,9,8,0,0,4,11,0,1,12,7,0,0,2,14,5,10,12,0,0,0,0,6,13,10,0,0,0]]}' \
    | json '"    prediction: %s" % d["predictions"]'
  check_artifact digits-forest "$version"
  zookeeper_closed "$id"
}

# With ZooKeeper credentials given to the services, a client without them (a bare zkCli.sh in a
# ZooKeeper container) can neither read job $1 nor list the jobs.
zookeeper_closed() {
  local env zk command said get
  env=$(docker inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$(compose ps -q api)")
  if ! grep -q '^ZOOTRAIN_ZK_AUTH=.' <<< "$env"; then
    say "    ZooKeeper ACLs: the compose file gives the services no credentials (not checked)"
    return
  fi
  zk=$(compose ps -q zk1)
  # Both at once (each is a JVM start); waited for by PID (dockerd may be a child too).
  docker exec "$zk" zkCli.sh -server 127.0.0.1:2181 get "/zootrain/jobs/$1" > "$WORK/zk-get" 2>&1 &
  get=$!
  docker exec "$zk" zkCli.sh -server 127.0.0.1:2181 ls /zootrain/jobs > "$WORK/zk-ls" 2>&1 &
  wait "$get" $! || true
  for command in get ls; do
    said=$(< "$WORK/zk-$command")
    grep -q -E 'NoAuth|Insufficient permission' <<< "$said" \
      || fail "a ZooKeeper client without credentials could $command: ${said: -300}"
  done
  say "    ZooKeeper ACLs: a client without the credentials can neither read job $1 nor list jobs"
}

# check_artifact MODEL VERSION: the model file's bytes hash to what the version and the
# X-Content-SHA256 header say.
check_artifact() {
  local expected sha header
  expected=$(api GET "/v1/models/$1/versions/$2" | json 'd["sha256"]')
  curl -sS -f -o "$WORK/model.skops" -D "$WORK/artifact.headers" \
    -H "Authorization: Bearer $ZOOTRAIN_TOKEN" \
    "$API/v1/models/$1/versions/$2/artifact" || fail "artifact download failed"
  sha=$(sha256sum "$WORK/model.skops" | cut -d' ' -f1)
  header=$(awk 'tolower($1) == "x-content-sha256:" {print $2}' "$WORK/artifact.headers" | tr -d '\r')
  if [ "$sha" != "$expected" ] || [ "$sha" != "$header" ]; then
    fail "artifact sha256 $sha; the version says $expected, the header $header"
  fi
  say "    artifact of $1 version $2: $(stat -c %s "$WORK/model.skops") bytes, sha256 $sha" \
    "(matches the version and X-Content-SHA256)"
}

registered_workers() { api GET /v1/workers | json 'len(d)'; }

scale() {
  compose up -d --scale worker=3
  wait_healthy "$PATIENCE"
  local deadline=$((SECONDS + PATIENCE))
  until [ "$(registered_workers)" -ge 3 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "3 workers not registered after $PATIENCE s"
    sleep 0.5
  done
  say "    3 workers registered"
}

# The worker containers (id prefixes: a worker's id starts with its host name, which is its
# container's short id) running a shard of job $1.
busy_workers() {
  api GET "/v1/jobs/$1" | json '" ".join(sorted({s["worker"].split("-")[0] for s in d["shards"] if s["state"] == "running" and s["worker"]}))'
}

# The shards of job $1 that ZooKeeper says worker container $2 is running.
shards_running_on() {
  api GET "/v1/jobs/$1" | "$BIN/python" -c '
import json, sys
shards = json.load(sys.stdin)["shards"]
print(" ".join(str(s["index"]) for s in shards
               if s["state"] == "running" and (s["worker"] or "").startswith(sys.argv[1] + "-")))' "$2"
}

zookeeper_leader() {
  local container
  for container in $(compose ps -q zk1 zk2 zk3); do
    # (Read whole before grep: with pipefail, grep -q stopping early could fail the pipe.)
    if grep -q 'Mode: leader' <<< "$(docker exec "$container" zkServer.sh status 2>/dev/null)"; then
      echo "$container"
      return
    fi
  done
  fail "no ZooKeeper container says it is the leader"
}

submit() {  # submit KEY SPEC: the new job's id (the key makes a retried submit safe)
  api POST /v1/jobs -H 'Content-Type: application/json' -H "Idempotency-Key: $1" -d "$2" \
    | json 'd["id"]'
}

failover() {
  local id quick deadline busy victim="" orphaned="" leader killed=()
  leader=$(zookeeper_leader)
  # Six shards of about four seconds each on three workers: long enough to break things under it.
  id=$(submit failover-forest '{
    "model_name": "failover-forest",
    "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 40, "max_depth": 12},
    "dataset": {"kind": "synthetic", "task": "classification", "n_samples": 45000,
                "n_features": 20, "random_state": 3},
    "shards": 6,
    "max_attempts": 3
  }')
  say "    submitted job $id (6 shards)"
  deadline=$((SECONDS + PATIENCE))
  until [ -n "$(busy_workers "$id")" ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "no shard of job $id started within $PATIENCE s"
    sleep 0.2
  done

  # Kill a worker in the middle of a shard. A worker caught between two shards has nothing to
  # lose, so then another busy one is killed (a worker claims its next shard at once: rare).
  for _ in 1 2; do
    busy=$(busy_workers "$id")
    for victim in $busy; do [[ " ${killed[*]} " == *" $victim "* ]] || break; done
    [ -n "$victim" ] || break
    grep -q "^$victim" <<< "$(compose ps -q worker)" \
      || fail "worker $victim, running a shard of job $id, is not a container of this project"
    docker kill "$victim" > /dev/null
    killed+=("$victim")
    orphaned=$(shards_running_on "$id" "$victim")
    [ -n "$orphaned" ] && break
    say "    worker $victim was between two shards when killed; killing another busy worker"
  done
  [ -n "$orphaned" ] || fail "could not kill a worker in the middle of a shard of job $id:" \
    "$(api GET "/v1/jobs/$id" | json '[(s["state"], s["worker"]) for s in d["shards"]]')"
  say "    docker kill worker container $victim, which was running shard(s) $orphaned"

  say "    docker stop the ZooKeeper leader, $(docker inspect -f '{{.Name}}' "$leader" | tr -d /)"
  docker stop "$leader" > /dev/null

  # The service keeps taking and finishing jobs with a ZooKeeper node and a worker gone.
  quick=$(submit quick-during-failover '{
    "model_name": "iris-forest", "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 10}, "dataset": {"kind": "builtin", "name": "iris"}, "shards": 2
  }')
  say "    submitted job $quick meanwhile"
  expect_succeeded "$quick"
  expect_succeeded "$id"
  api GET "/v1/jobs/$id" | "$BIN/python" -c '
import json, sys
from datetime import datetime
d = json.load(sys.stdin)
took = datetime.fromisoformat(d["finished_at"]) - datetime.fromisoformat(d["created_at"])
print("    job %s succeeded %.0f s after its submit" % (d["id"], took.total_seconds()))'
  # The killed worker's shards were claimed again, after its session expired, and finished by
  # a live worker.
  api GET "/v1/jobs/$id" | "$BIN/python" -c '
import json, sys
shards = {s["index"]: s for s in json.load(sys.stdin)["shards"]}
victim, orphaned = sys.argv[1], [int(i) for i in sys.argv[2].split()]
for i in orphaned:
    s = shards[i]
    if s["state"] != "done" or s["worker"].startswith(victim + "-") or s["attempts"] < 2:
        sys.exit(f"shard {i} of the killed worker: {s}")
    print("    shard %d: attempt %d finished by %s" % (i, s["attempts"], s["worker"]))' \
    "$victim" "$orphaned" || fail "the killed worker's shard was not taken over"
  api POST /v1/models/failover-forest/predict -H 'Content-Type: application/json' \
    -d '{"instances": [[0.1, -1.2, 0.3, 2.0, 0.0, 1.1, -0.4, 0.9, 0.2, -2.2, 0.5, 0.5, 1.0, -1.0, 0.0, 0.3, 0.8, -0.6, 1.4, 0.0]]}' \
    | json '"    failover-forest serves predictions: %s" % d["predictions"]'
  local states
  states=$(api GET '/v1/jobs?limit=500' | json '" ".join(sorted(j["state"] for j in d["items"]))')
  say "    every job: $states"
  [ "$(tr ' ' '\n' <<< "$states" | sort -u)" = succeeded ] || fail "not every job succeeded"
  say "    answers 503 (retried) while ZooKeeper failed over: $(wc -l < "$WORK/unavailable")"
}

# Whether the compose file has the object-store profile (artifacts in an S3 bucket).
has_object_store() {
  "$BIN/python" - <<'PY'
import sys
import yaml
services = yaml.safe_load(open("docker/docker-compose.yml"))["services"]
sys.exit(0 if any("object-store" in (s.get("profiles") or []) for s in services.values()) else 1)
PY
}

object_store() {
  # docs/compose.md's object-store commands: the stack with its artifacts in the profile's bucket.
  local id version
  compose --env-file docker/object-store.env up -d
  wait_healthy "$PATIENCE"
  id=$(submit object-store-forest '{
    "model_name": "iris-s3", "algorithm": "random_forest_classifier",
    "params": {"n_estimators": 10}, "dataset": {"kind": "builtin", "name": "iris"}, "shards": 2
  }')
  say "    submitted job $id"
  expect_succeeded "$id"
  version=$(api GET "/v1/jobs/$id" | json 'd["model"]["version"]')
  api POST /v1/models/iris-s3/predict -H 'Content-Type: application/json' \
    -d '{"instances": [[5.1, 3.5, 1.4, 0.2]]}' | json '"    iris-s3 predicts %s" % d["predictions"]'
  check_artifact iris-s3 "$version"
  down --env-file docker/object-store.env
}

down() {  # down [compose options]: down -v, and nothing of the project left
  compose "$@" down -v
  STACK_UP=""
  local left
  left=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
         docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"
         docker network ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
  [ -z "$left" ] || fail "down -v left containers, volumes or networks: $left"
  say "    no container, volume or network of $COMPOSE_PROJECT_NAME is left"
}

# ---------------------------------------------------------------------------------------------

RUN_START=$(now)
[ -x "$BIN/python" ] || fail "no $BIN/python: run make install first"
# The object-store profile's run: where the compose file has it, unless turned off.
OBJECT_STORE=""
if [ "${ZOOTRAIN_COMPOSE_OBJECT_STORE:-1}" != 0 ] && has_object_store; then OBJECT_STORE=1; fi
say "compose-test: images=$MODE, project $COMPOSE_PROJECT_NAME," \
  "object-store profile: ${OBJECT_STORE:+yes}${OBJECT_STORE:-no}"
command -v curl > /dev/null || ensure_packages curl

# An engine installed already starts first: it may hold a base image this recipe made.
ENGINE=""
if command -v dockerd > /dev/null || [ -x /usr/sbin/dockerd ]; then
  step "dockerd" start_dockerd
  ENGINE=1
fi
BASE_READY=""
if [ "$MODE" = local ]; then
  if [ -n "$ENGINE" ] && base_is_current; then
    say "==> base image $BASE_IMAGE_TAG: made by this recipe already, reused" \
      "(ZOOTRAIN_COMPOSE_FRESH=1 rebuilds it)"
    BASE_READY=1
  else
    step "packages: debootstrap" ensure_packages debootstrap
    begin "debootstrap (bookworm, python3) *" tests/compose/images.sh rootfs "$WORK/rootfs"
  fi
fi
begin "wheelhouse (make wheelhouse) *" make --no-print-directory wheelhouse
if [ -z "$ENGINE" ]; then
  step "packages: docker.io" ensure_packages docker.io
  step "dockerd" start_dockerd
fi
pick_compose
pick_builder
say "    builds with: ${BUILDER[*]} build"
if [ "$MODE" = local ]; then
  if [ -z "$BASE_READY" ]; then
    finish "debootstrap (bookworm, python3) *"
    step "base image (docker import)" tests/compose/images.sh base "$WORK/rootfs"
  fi
  BASE=$BASE_IMAGE_TAG
  export ZOOKEEPER_IMAGE=$ZOOKEEPER_IMAGE_TAG
  begin "zookeeper stand-in image *" tests/compose/images.sh zookeeper
  if [ -n "$OBJECT_STORE" ]; then
    export MINIO_IMAGE=zootrain-compose/minio:moto MC_IMAGE=zootrain-compose/minio:moto
    begin "minio stand-in image (moto) *" tests/compose/images.sh minio
  fi
else
  BASE=python:3.11-slim
  unset ZOOKEEPER_IMAGE
  begin "pull zookeeper:3.8 *" docker pull zookeeper:3.8
fi
finish "wheelhouse (make wheelhouse) *"
step "app image (docker build, BASE_IMAGE=$BASE) *" build_app "$BASE"
if [ "$MODE" = local ]; then
  finish "zookeeper stand-in image *"
  [ -z "$OBJECT_STORE" ] || finish "minio stand-in image (moto) *"
else
  finish "pull zookeeper:3.8 *"
fi

pick_port
step "token (zootrain token new), ZooKeeper credentials" credentials
step "up -d, every service healthy" up
step "curl walkthrough" walkthrough
step "up -d --scale worker=3" scale
step "failover: ZooKeeper leader stopped, busy worker killed" failover
step "down -v" down
if [ -n "$OBJECT_STORE" ]; then
  STACK_UP=1
  step "object-store profile: up -d, a job, down -v" object_store
fi
