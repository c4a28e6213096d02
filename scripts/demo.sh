#!/usr/bin/env bash
# The README's curl walkthrough, run against the stack: submit → wait → show the version → predict.
# The API token is $ZOOTRAIN_TOKEN, or the one `make up` keeps in var/token.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
json() { "$BIN/python" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

ZOOTRAIN_TOKEN=${ZOOTRAIN_TOKEN:-$(cat "$TOKEN_FILE" 2>/dev/null || true)}
if [ -z "$ZOOTRAIN_TOKEN" ]; then
  echo "no API token: export ZOOTRAIN_TOKEN=<token> (make up keeps one in $TOKEN_FILE)" >&2
  exit 1
fi

# call METHOD PATH [curl options]: the answer's body; on an error, the problem's detail on stderr.
call() {
  local answer status
  answer=$(api_curl -sS -X "$1" "$API_URL$2" -w '\n%{http_code}' "${@:3}") || return 1
  status=${answer##*$'\n'}
  answer=${answer%$'\n'*}
  if [ "$status" -ge 400 ]; then
    echo "$1 $2: $status $(echo "$answer" | json 'd.get("detail", d)' 2>/dev/null || echo "$answer")" >&2
    if [ "$status" = 401 ]; then
      echo "the service did not accept the API token: check ZOOTRAIN_TOKEN (make up keeps its" \
        "token in $TOKEN_FILE)" >&2
    fi
    return 1
  fi
  echo "$answer"
}

echo "submitting a random-forest job (iris, 4 shards)"
job=$(call POST /v1/jobs -H 'Content-Type: application/json' -d '{
  "model_name": "iris-forest",
  "algorithm": "random_forest_classifier",
  "params": {"n_estimators": 25, "max_depth": 6},
  "dataset": {"kind": "builtin", "name": "iris"},
  "shards": 4
}')
id=$(echo "$job" | json 'd["id"]')
echo "job $id accepted"

state=queued
for _ in $(seq 1 600); do
  state=$(call GET "/v1/jobs/$id" | json 'd["state"]')
  case $state in succeeded|failed|cancelled) break ;; esac
  sleep 0.2
done
view=$(call GET "/v1/jobs/$id")
if [ "$state" != succeeded ]; then
  echo "job $id ended $state: $(echo "$view" | json 'd.get("error")')" >&2
  exit 1
fi
version=$(echo "$view" | json 'd["model"]["version"]')
echo "job $id succeeded: published iris-forest version $version"
call GET "/v1/models/iris-forest/versions/$version" \
  | json '"test accuracy %.3f (merged from %d shard models; shards: %s)" % (d["metrics"]["accuracy"], d["shards"], ", ".join("%.3f" % s["metrics"]["accuracy"] for s in d["shard_metrics"]))'
prediction=$(call POST /v1/models/iris-forest/predict \
  -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')
echo "prediction for [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]: $prediction"
