"""The job service's own process never loads the scientific stack, also while it serves: after
a submit (validated against scikit-learn), an upload (read with pandas) and predictions, none of
scikit-learn, scipy, pandas, numpy or pyarrow is mapped into it. Its children do that work."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from testkit.stack import Stack, descendants, wait_job
from tests.integration.conftest import iris_spec, submit

pytestmark = pytest.mark.integration

HEAVY = ("sklearn", "scipy", "pandas", "numpy", "pyarrow")


def mapped_heavy(pid: int) -> set[str]:
    """The heavy packages whose files (their compiled extensions) the process has mapped."""
    found: set[str] = set()
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return found  # gone since it was listed
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        parts = Path(fields[5]).parts if len(fields) == 6 else ()
        found.update(name for name in HEAVY if name in parts or f"{name}.libs" in parts)
    return found


def test_the_job_service_serves_without_the_scientific_stack(
    shared_stack: Stack, shared_http: httpx.Client
) -> None:
    name = f"boundary-{uuid.uuid4().hex[:8]}"
    job = submit(shared_http, iris_spec(name))
    assert wait_job(shared_http, job["id"])["state"] == "succeeded"
    for _ in range(20):
        predicted = shared_http.post(
            f"/v1/models/{name}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}
        )
        assert predicted.status_code == 200, predicted.text
    refused = shared_http.post("/v1/jobs", json=iris_spec(name, params={"n_estimators": -1}))
    assert refused.status_code == 422 and "n_estimators" in refused.text
    rows = "a,b,label\n" + "".join(f"{i},{i % 3},{'xy'[i % 2]}\n" for i in range(40))
    uploaded = shared_http.post("/v1/datasets", files={"file": ("small.csv", rows.encode())})
    assert uploaded.status_code == 201, uploaded.text
    api = next(p for p in shared_stack.processes if p.name == "api")
    assert mapped_heavy(api.popen.pid) == set()
    # The check can see them: the service's own children (forkserver, predictions) map them.
    assert any("sklearn" in mapped_heavy(pid) for pid in descendants(api.popen.pid))
    # A worker's main process does not either; its training children do.
    worker = next(p for p in shared_stack.processes if p.name.startswith("worker"))
    assert mapped_heavy(worker.popen.pid) == set()
