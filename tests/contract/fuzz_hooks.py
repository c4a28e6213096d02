"""schemathesis hooks for the fuzz run (tests/contract/schemathesis.toml names this module).

The document states what one field may be; some rules span fields or resources and no schema
states them: a classifier needs a classification dataset, a predict row has as many values as
the model has features, an upload must parse. A request generated as *valid* (positive mode) is
brought in line with those rules here, and made cheap (a few small trees on a few hundred rows),
so that the run's accepted jobs reach the queue, the workers and predict within minutes instead
of being refused at the door or training for an hour. A request generated as *invalid* is left
exactly as it was: it must be refused, and the run checks that it is.

The clamps only move a value inside the range the document allows (never across its bounds),
so a repaired request stays valid. The server learns nothing from this module: its validation
is what is under test.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from typing import Any

import httpx
import jsonschema_rs
import schemathesis
from schemathesis.core.parameters import ParameterLocation

from zootrain.ml import param_schema

FORESTS = {
    "random_forest_classifier",
    "random_forest_regressor",
    "extra_trees_classifier",
    "extra_trees_regressor",
}
REGRESSORS = {
    "random_forest_regressor",
    "extra_trees_regressor",
    "sgd_regressor",
    "linear_regression",
    "ridge",
}
CLUSTERING = {"kmeans"}
CLASSIFICATION_BUILTINS = ("iris", "wine", "breast_cancer", "digits")
BUILTIN_FEATURES = {"iris": 4, "wine": 13, "breast_cancer": 30, "digits": 64, "diabetes": 10}

# Ceilings for generated jobs (the document's own bounds are far higher).
CHEAP = {
    "n_estimators": 6,
    "max_iter": 60,
    "n_clusters": 5,
    "n_init": 2,
    "max_depth": 8,
}
MAX_ROWS = 400
MAX_FEATURES = 8
MAX_CLASSES = 4
MAX_SHARDS = 3
MAX_ATTEMPTS = 2

_PARAMS = param_schema.load()
_VALIDATORS = {
    (algorithm, name): jsonschema_rs.validator_for(schema)
    for algorithm, table in _PARAMS.items()
    for name, schema in table["properties"].items()
}


def _operation(context: Any) -> str:
    operation = context.operation
    return f"{operation.method.upper()} {operation.path}" if operation is not None else ""


def _positive_body(case: Any) -> bool:
    """Whether the case is meant to be valid. (Its per-component modes are not all set yet
    when the hook runs: a case generated as negative anywhere is left alone.)"""
    meta = case.meta
    if meta is None:
        return True
    return not meta.generation.mode.is_negative and not meta.is_negative_at(ParameterLocation.BODY)


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    operation = _operation(context)
    if not _positive_body(case) or not isinstance(case.body, dict):
        return case
    if operation == "POST /v1/jobs":
        case.body = job(dict(case.body))
    elif operation == "POST /v1/models/{name}/predict":
        case.body = predict(dict(case.body), case.path_parameters or {})
    elif operation == "POST /v1/datasets":
        upload(case.body)
    elif operation == "PATCH /v1/config":
        live_settings(case.body)
    return case


# Live settings that would outlast the run's cleanup (a retry scheduled a lifetime away, finished
# jobs deleted before they are followed) are kept within what the stack can live with.
_LIVE_CEILINGS = {"retry_backoff": 1.0, "retry_backoff_max": 1.0}
_LIVE_FLOORS = {"job_retention": 86_400.0, "task_time_limit": 60.0}


def live_settings(body: dict[str, Any]) -> None:
    settings = body.get("settings")
    if not isinstance(settings, dict):
        return
    for key, ceiling in _LIVE_CEILINGS.items():
        if key in settings:
            settings[key] = _clamp(settings[key], ceiling)
    for key, floor in _LIVE_FLOORS.items():
        value = settings.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            settings[key] = max(value, floor)


# -- jobs -----------------------------------------------------------------------------------------


def _clamp(value: Any, limit: int | float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    return min(value, limit)


def job(body: dict[str, Any]) -> dict[str, Any]:
    algorithm = body.get("algorithm")
    if algorithm not in _PARAMS:
        return body
    if isinstance(body.get("shards"), int):
        body["shards"] = _clamp(body["shards"], MAX_SHARDS)
    if isinstance(body.get("max_attempts"), int):
        body["max_attempts"] = _clamp(body["max_attempts"], MAX_ATTEMPTS)
    if isinstance(body.get("test_size"), float | int):
        body["test_size"] = min(max(body["test_size"], 0.15), 0.5)
    if isinstance(body.get("params"), dict):
        body["params"] = _cheap_params(body["params"])
    task = _fit_dataset(body, algorithm)
    _fit_features(body)
    if body.get("partition") == "replicate" and algorithm not in FORESTS:
        body["partition"] = "random"
    if body.get("partition") == "stratified" and task != "classification":
        body["partition"] = "random"
    _fit_search(body, algorithm)
    return body


def _cheap_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: _clamp(v, CHEAP[k]) if k in CHEAP else v for k, v in params.items()}


def _fit_dataset(body: dict[str, Any], algorithm: str) -> str | None:
    """Give the algorithm a dataset of its task; the dataset's task (None: uploaded)."""
    dataset = body.get("dataset")
    if not isinstance(dataset, dict):
        return None
    dataset = dict(dataset)
    body["dataset"] = dataset
    regression = algorithm in REGRESSORS
    if dataset.get("kind") == "builtin":
        if regression:
            dataset["name"] = "diabetes"
        elif algorithm not in CLUSTERING and dataset.get("name") not in CLASSIFICATION_BUILTINS:
            dataset["name"] = "iris"
        return "regression" if dataset["name"] == "diabetes" else "classification"
    if dataset.get("kind") != "synthetic":
        return None
    if regression:
        dataset["task"] = "regression"
    elif algorithm not in CLUSTERING and dataset.get("task") == "regression":
        dataset["task"] = "classification"
    task = dataset.get("task")
    dataset["n_samples"] = min(max(_int(dataset.get("n_samples"), 200), 100), MAX_ROWS)
    features = max(2, min(_int(dataset.get("n_features"), 5), MAX_FEATURES))
    dataset["n_features"] = features
    # The defaults of the fields that do not apply to the task (the model refuses others).
    if task == "regression":
        dataset.pop("n_classes", None)
    if task != "regression":
        dataset.pop("noise", None)
    if task != "blobs":
        dataset.pop("cluster_std", None)
    informative = min(_int(dataset.get("n_informative"), features), features)
    if task == "blobs":
        dataset.pop("n_informative", None)
    elif "n_informative" in dataset:
        dataset["n_informative"] = informative
    if task != "regression" and "n_classes" in dataset:
        # make_classification puts 2 clusters per class on a hypercube's vertices.
        most = 2 ** (informative - 1) if task == "classification" else MAX_CLASSES
        dataset["n_classes"] = max(2, min(_int(dataset["n_classes"], 2), most, MAX_CLASSES))
    return "regression" if task == "regression" else "classification"


def _fit_features(body: dict[str, Any]) -> None:
    """Parameters that count features, within the dataset's (the submit refuses more)."""
    params, dataset = body.get("params"), body.get("dataset")
    if not isinstance(params, dict) or not isinstance(dataset, dict):
        return
    if dataset.get("kind") == "synthetic":
        features = dataset.get("n_features")
    else:
        features = BUILTIN_FEATURES.get(str(dataset.get("name")))
    if not isinstance(features, int):
        return
    if type(params.get("max_features")) is int:
        params["max_features"] = min(params["max_features"], features)
    cst = params.get("monotonic_cst")
    if isinstance(cst, list) and cst:
        params["monotonic_cst"] = [cst[i % len(cst)] for i in range(features)]


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _fit_search(body: dict[str, Any], algorithm: str) -> None:
    search = body.get("search")
    if body.get("kind") != "search":
        body.pop("search", None)
        return
    if not isinstance(search, dict):
        body["kind"] = "train"
        body.pop("search", None)
        return
    body["baseline"] = False
    search = dict(search)
    body["search"] = search
    # Each candidate's values from the algorithm's own schema, few and cheap.
    spaces = [k for k in ("param_grid", "param_distributions") if isinstance(search.get(k), dict)]
    kept = spaces[0] if spaces else "param_grid"
    search[kept] = _search_space(algorithm, search.get(kept) or {})
    for other in {"param_grid", "param_distributions"} - {kept}:
        search.pop(other, None)
    search["n_iter"] = _clamp(search.get("n_iter", 3), 3)
    search["cv"] = min(_int(search.get("cv"), 2), 3)
    search["scoring"] = None  # a scorer of the wrong task fails at fit time, not at submit


def _search_space(algorithm: str, space: dict[str, Any]) -> dict[str, list[Any]]:
    chosen: dict[str, list[Any]] = {}
    for name, values in space.items():
        validator = _VALIDATORS.get((algorithm, name))
        if validator is None or not isinstance(values, list):
            continue
        good = [_clamp(v, CHEAP[name]) if name in CHEAP else v for v in values]
        good = [v for v in good if validator.is_valid(v)][:2]
        if good:
            chosen[name] = good
        if len(chosen) == 2:
            break
    return chosen


# -- predict and upload ---------------------------------------------------------------------------

_FEATURES: dict[tuple[str, int], int] = {}


def _n_features(name: str, version: Any) -> int | None:
    """How many values a row of ``name`` (``version``, or the latest) holds, from the API."""
    url = os.environ.get("ZOOTRAIN_FUZZ_URL")
    token = os.environ.get("ZOOTRAIN_FUZZ_TOKEN", "")
    if not url:
        return None
    if isinstance(version, int) and (name, version) in _FEATURES:
        return _FEATURES[(name, version)]
    try:
        response = httpx.get(
            f"{url}/v1/models/{name}/versions",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    live = [v for v in response.json() if not v.get("deleted_at")]
    for record in live:
        _FEATURES[(name, record["version"])] = record["n_features"]
    if isinstance(version, int):
        return _FEATURES.get((name, version))
    return max(live, key=lambda v: v["version"])["n_features"] if live else None


def predict(body: dict[str, Any], path: dict[str, Any]) -> dict[str, Any]:
    # One input, and a version or an alias: rules across fields that the schema does not state.
    if "instances" in body:
        body.pop("records", None)
        body.pop("dataframe_split", None)
    if "version" in body:
        body.pop("alias", None)
    rows = body.get("instances")
    name = path.get("name")
    if not isinstance(rows, list) or not isinstance(name, str):
        return body
    width = _n_features(name, body.get("version"))
    if width is None:
        return body
    resized = []
    for row in rows:
        if not isinstance(row, list) or not row:
            return body
        resized.append([row[i % len(row)] for i in range(width)])
    body["instances"] = resized
    return body


def upload(body: dict[str, Any]) -> None:
    """Half of the valid uploads keep their random bytes (the parser's own fuzz); the other half
    get a small CSV derived from those bytes, which parses and is stored.

    The bytes are replaced inside schemathesis' own wrapper: a case a hook rebuilds is validated
    again, and a body holding bytes cannot be, so it would count as invalid (and its 201 as a
    failure); the wrapper's content is not part of what marks a case as changed.
    """
    wrapped = body.get("file")
    data = getattr(wrapped, "data", None)
    if not isinstance(data, bytes):
        return
    digest = hashlib.sha256(data).digest()
    if digest[0] % 2:
        return
    columns = 2 + digest[1] % 4
    rows = 30 + digest[2] % 50
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"f{i}" for i in range(columns)] + ["label"])
    for r in range(rows):
        seed = hashlib.sha256(digest + r.to_bytes(4, "big")).digest()
        writer.writerow([seed[i] / 16 for i in range(columns)] + [seed[-1] % 3])
    wrapped.data = out.getvalue().encode()


@schemathesis.hook
def after_load_schema(context: Any, schema: Any) -> None:
    """schemathesis reads the submit's `model_name` as a reference to an existing "Model" that
    nothing produces, and so never starts a stateful scenario with a submit (nor follows the
    submit's links). A job *names* the model it will create: drop that input."""
    node = schema.analysis.dependency_graph.operations.get("POST /v1/jobs")
    if node is not None:
        node.inputs = [slot for slot in node.inputs if slot.resource.name != "Model"]
