#!/usr/bin/env bash
# The README's curl walkthrough, run against the stack: submit → wait → show the version → predict.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/common.sh
json() { "$BIN/python" -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

echo "submitting a random-forest job (iris, 4 shards)"
job=$(curl -fsS -X POST "$API_URL/v1/jobs" -H 'Content-Type: application/json' -d '{
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
  state=$(curl -fsS "$API_URL/v1/jobs/$id" | json 'd["state"]')
  case $state in succeeded|failed|cancelled) break ;; esac
  sleep 0.2
done
view=$(curl -fsS "$API_URL/v1/jobs/$id")
if [ "$state" != succeeded ]; then
  echo "job $id ended $state: $(echo "$view" | json 'd.get("error")')" >&2
  exit 1
fi
version=$(echo "$view" | json 'd["model"]["version"]')
echo "job $id succeeded: published iris-forest version $version"
curl -fsS "$API_URL/v1/models/iris-forest/versions/$version" \
  | json '"test accuracy %.3f (merged from %d shard models; shards: %s)" % (d["metrics"]["accuracy"], d["shards"], ", ".join("%.3f" % s["metrics"]["accuracy"] for s in d["shard_metrics"]))'
prediction=$(curl -fsS -X POST "$API_URL/v1/models/iris-forest/predict" \
  -H 'Content-Type: application/json' -d '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')
echo "prediction for [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]: $prediction"
