"""The artifact store as ZooKeeper's records see it: what they name, and what is on disk.

Computed from the records' JSON here, independently of zootrain/store_gc.py, so that the tests
and the chaos run check the collector rather than repeat it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from kazoo.client import KazooClient

TERMINAL = ("succeeded", "failed", "cancelled")
KINDS = ("models", "datasets", "rounds")


def _children(kazoo: KazooClient, path: str) -> list[str]:
    return sorted(kazoo.get_children(path)) if kazoo.exists(path) else []


def _json(kazoo: KazooClient, path: str) -> dict[str, object] | None:
    try:
        data, _ = kazoo.get(path)
    except Exception:  # deleted since the listing
        return None
    value: dict[str, object] = json.loads(data)
    return value


def referenced(kazoo: KazooClient, root: str, store: Path) -> set[str]:
    """What the records name: live versions, datasets (their manifests and the Parquet files
    a manifest names), and unfinished jobs' files."""
    found = _named_by_records(kazoo, root)
    for key in [k for k in found if k.startswith("datasets/") and k.endswith(".json")]:
        try:
            manifest = json.loads((store / key).read_bytes())
        except FileNotFoundError:
            continue  # missing: the comparison with what is stored reports it
        found |= {str(manifest["original"]["key"]), str(manifest["shuffled"]["key"])}
    return found


def _named_by_records(kazoo: KazooClient, root: str) -> set[str]:
    found: set[str] = set()
    for model in _children(kazoo, f"{root}/models"):
        for node in _children(kazoo, f"{root}/models/{model}"):
            record = _json(kazoo, f"{root}/models/{model}/{node}")
            if record is not None and record.get("deleted_at") is None:
                found.add(str(record["artifact"]))
    for dataset in _children(kazoo, f"{root}/datasets"):
        record = _json(kazoo, f"{root}/datasets/{dataset}")
        if record is not None:
            found.add(str(record["artifact"]))
    for job_id in _children(kazoo, f"{root}/jobs"):
        job = _json(kazoo, f"{root}/jobs/{job_id}")
        if job is None or job["state"] in TERMINAL:
            continue
        source = job.get("dataset_source")
        if isinstance(source, dict):
            found.add(str(source["artifact"]))
        for shard in _children(kazoo, f"{root}/jobs/{job_id}/shards"):
            record = _json(kazoo, f"{root}/jobs/{job_id}/shards/{shard}")
            if record is not None and record.get("artifact"):
                found.add(str(record["artifact"]))
        found |= _named_by_rounds(kazoo, f"{root}/jobs/{job_id}/rounds")
    return found


def _named_by_rounds(kazoo: KazooClient, rounds: str) -> set[str]:
    """A job training in rounds: the parameters and final model its round record names, and
    the results entered in its open round (blobs kept in the store rather than inline)."""
    records = [_json(kazoo, rounds)] if kazoo.exists(rounds) else []
    for number in _children(kazoo, rounds):
        for index in _children(kazoo, f"{rounds}/{number}"):
            records.append(_json(kazoo, f"{rounds}/{number}/{index}"))
    found: set[str] = set()
    for record in records:
        for field in ("blob", "model"):
            blob = (record or {}).get(field)
            if isinstance(blob, dict) and blob.get("artifact"):
                found.add(str(blob["artifact"]))
    return found


def stored(store: Path) -> set[str]:
    """Every file in the store's directories, as keys ("models/<name>")."""
    return {
        f"{kind}/{path.name}"
        for kind in KINDS
        if (store / kind).is_dir()
        for path in (store / kind).iterdir()
    }


def young_temporary(store: Path, keys: set[str], age: float = 3000.0) -> set[str]:
    """The temporary files among ``keys`` written less than ``age`` seconds ago: writes in
    progress, for all a collector knows, which it must leave alone."""
    young = set()
    for key in keys:
        if "/.tmp-" not in key:
            continue
        try:
            if (store / key).stat().st_mtime > time.time() - age:
                young.add(key)
        except FileNotFoundError:
            continue
    return young
