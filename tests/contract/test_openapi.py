"""The contract: openapi.json is what the app serves, and fuzzing it never gets a 5xx."""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.openapi import document
from testkit.auth import ADMIN_TOKEN, SUBMIT_TOKEN, TOKENS, bearer
from testkit.stack import ROOT, Stack, wait_job
from tests.contract.fuzzing import (
    TERMINAL,
    Report,
    documented_links,
    documented_operations,
    failed_jobs,
    failures,
    follow_jobs,
    job_errors,
    replay_lines,
    run_schemathesis,
)
from tests.support.specs import iris_spec
from zootrain.ml import param_schema
from zootrain.settings import Settings
from zootrain.spec import ALGORITHM_NAMES

PROBLEM = "application/problem+json"

pytestmark = pytest.mark.integration


def test_openapi_json_is_current() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert json.loads(committed) == json.loads(document()), "run `make openapi` and commit it"


def test_served_document_matches(stack: Stack) -> None:
    stack.start_api()
    served = httpx.get(f"{stack.api_url}/openapi.json").json()
    assert served == json.loads((ROOT / "openapi.json").read_text())


def test_job_spec_has_one_branch_per_algorithm_with_its_own_params() -> None:
    """The spec's schema keeps what it said (readers such as the dashboard take the algorithm
    names from it) and adds one branch per algorithm, whose params are that algorithm's."""
    document = json.loads((ROOT / "openapi.json").read_text())
    spec = document["components"]["schemas"]["JobSpec"]
    assert spec["properties"]["algorithm"]["enum"] == sorted(ALGORITHM_NAMES)
    assert sorted(spec["discriminator"]["mapping"]) == sorted(ALGORITHM_NAMES)
    table = param_schema.load()
    validator = jsonschema_rs.validator_for(
        {"$ref": "#/components/schemas/JobSpec", "components": document["components"]}
    )
    for name in ALGORITHM_NAMES:
        branch = _resolve(document, spec["discriminator"]["mapping"][name])
        assert branch["properties"]["algorithm"]["enum"] == [name]
        assert _resolve(document, branch["properties"]["params"]["$ref"]) == table[name]
        good = {**iris_spec(), "algorithm": name, "params": {}}
        assert validator.is_valid(good), name
        assert not validator.is_valid({**good, "params": {"no_such_parameter": 1}}), name
    forest = {**iris_spec(), "params": {"n_estimators": 10}}
    assert validator.is_valid(forest)
    assert not validator.is_valid({**forest, "algorithm": "ridge"})  # ridge has no trees
    assert not validator.is_valid({**forest, "params": {"n_estimators": 100_000}})  # ceiling


def _resolve(document: dict[str, object], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


# `make fuzz` runs the long form: 10,000 requests or more.
EXAMPLES = int(os.environ.get("ZOOTRAIN_FUZZ_EXAMPLES", "40"))
MIN_REQUESTS = int(os.environ.get("ZOOTRAIN_FUZZ_MIN_REQUESTS", "1000"))
# Every run draws its own seed (printed); a failing one is replayed with ZOOTRAIN_FUZZ_SEED.
SEED = int(os.environ.get("ZOOTRAIN_FUZZ_SEED") or random.randrange(2**31))
# Runs with the admin token after the main one (a submit token, so that the models it predicts
# from and downloads are not deleted under it), each on a few operations so that its stateful
# phase follows their links often: what only an admin may do (delete versions, while their
# models still exist; then models and datasets), and submit-then-cancel, which succeeds only
# while the job runs (the main run's few tries often come after the worker finished).
ADMIN_RUNS = [
    ["delete_version_v1_models__name__versions__version__delete", "list_models_v1_models_get"],
    [
        "delete_model_v1_models__name__delete",
        "delete_dataset_v1_datasets__dataset_id__delete",
        "list_models_v1_models_get",
        "upload_dataset_v1_datasets_post",
    ],
    ["submit_job_v1_jobs_post", "cancel_job_v1_jobs__job_id__delete"],
    # Last, as it may pause the cluster or drain its worker: both are undone after the runs.
    [
        "get_config_v1_config_get",
        "patch_config_v1_config_patch",
        "config_history_v1_config_history_get",
        "list_workers_v1_workers_get",
        "drain_worker_v1_workers__worker_id__drain_post",
        "undrain_worker_v1_workers__worker_id__drain_delete",
    ],
]
# Seconds for every accepted job to finish after the runs: each is a few small fits.
JOB_TIMEOUT = 600.0
JOB_SECONDS = 3.0


@pytest.mark.timeout(max(1200, 6 * EXAMPLES))  # `make fuzz` (1,500 examples) runs far longer
def test_schemathesis_finds_no_server_error(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Property-based requests against every operation of the live app (real ZooKeeper, a
    worker): every check schemathesis has but two (tests/contract/schemathesis.toml says why),
    a success on every operation, the stateful phase following the document's links, and every
    job the fuzzer got accepted trained to its end."""
    replay = f"ZOOTRAIN_FUZZ_SEED={SEED} ZOOTRAIN_FUZZ_EXAMPLES={EXAMPLES}"
    with capsys.disabled():
        print(f"\nfuzz seed {SEED} (replay: {replay} pytest tests/contract -k schemathesis)")
    # A shard that fails is retried after at most a second, not a minute.
    stack.settings["ZOOTRAIN_RETRY_BACKOFF_MAX"] = "1"
    stack.start_api()
    stack.start_worker(ZOOTRAIN_WORKER_CONCURRENCY="2")
    url = stack.api_url or ""
    _publish_the_documented_example(url)

    runs = [run_schemathesis(url, SUBMIT_TOKEN, tmp_path / "main", seed=SEED, examples=EXAMPLES)]
    for number, include in enumerate(ADMIN_RUNS, start=1):
        runs.append(
            run_schemathesis(
                url,
                ADMIN_TOKEN,
                tmp_path / f"admin-{number}",
                seed=SEED + number,
                examples=max(10, EXAMPLES // 3),
                phases="examples,fuzzing,stateful",
                include=include,
            )
        )
    _undo_live_changes(url)
    report = Report()
    for result, events in runs:
        assert result.returncode == 0, (
            f"{failures(result.stdout)}\n{result.stderr[-2000:]}\n--- api log ---\n"
            f"{stack.processes[0].output()[-1500:]}\nreplay: {replay}"
        )
        report.read(events)

    timeout = JOB_TIMEOUT + JOB_SECONDS * len(report.jobs)
    outcome = follow_jobs(url, ADMIN_TOKEN, sorted(report.jobs), timeout)
    states = Counter(outcome.states.values())
    failed = failed_jobs(
        url, ADMIN_TOKEN, [j for j, state in outcome.states.items() if state == "failed"]
    )
    operations = documented_operations()
    links = Counter(
        link for (link, status), n in report.links.items() for _ in range(n) if status < 300
    )
    summary = "\n".join(
        [
            f"fuzz seed {SEED}: {report.total} requests, statuses "
            f"{dict(sorted(report.statuses.items()))}",
            "successes per operation:",
            report.table(operations),
            f"generated jobs accepted: {len(report.jobs)}, ended {dict(states)}",
            *(f"  failed: {n} x {e}" for e, n in job_errors(failed).items()),
            *(["failed jobs' specs (POST one to /v1/jobs to replay it):"] if failed else []),
            *replay_lines(failed),
            "stateful links followed to a 2xx:",
            *(f"  {links[link]:>4}  {link}" for link in documented_links()),
        ]
    )
    with capsys.disabled():
        print(summary)

    assert report.total >= MIN_REQUESTS, summary
    assert not [s for s in report.statuses if s >= 500], summary
    assert report.error_types == {PROBLEM}, report.error_types
    # The token was accepted: most requests reached the operations' own logic.
    assert report.statuses[401] < report.total // 10, summary
    # Every operation answered a generated request with success at least once: a job
    # accepted, an upload stored, a predict and a download served, each delete done.
    assert [op for op in operations if not report.successes(op)] == [], summary
    # The stateful phase ran the document's links: from a submit, an upload and the model
    # list, on to what their answers name.
    for source in ("POST /v1/jobs", "POST /v1/datasets", "GET /v1/models"):
        assert any(link.startswith(source) for link in links), (source, summary)
    # Every accepted job ran to its end; none was lost, none answered a 5xx.
    assert report.jobs, summary
    assert outcome.server_errors == [], outcome.server_errors
    unfinished = {j: s for j, s in outcome.states.items() if s not in TERMINAL}
    assert unfinished == {}, (unfinished, summary)
    # A job accepted at submit and then crashed in training is a value submit should have
    # refused with a 422 (max_samples=1e308: OverflowError in every shard, found this way).
    crashed = [job for job in failed if job.crashed]
    assert crashed == [], "\n".join(["accepted, then crashed:", *replay_lines(crashed), summary])
    assert all(p.alive() for p in stack.processes), [p.output()[-2000:] for p in stack.processes]


def _undo_live_changes(url: str) -> None:
    """The configuration back to the environment's and no worker drained, so that every job
    the runs got accepted can run to its end."""
    with httpx.Client(base_url=url, headers=bearer(ADMIN_TOKEN), timeout=30) as client:
        reset = client.patch(
            "/v1/config",
            content=json.dumps({"settings": None}),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert reset.status_code == 200, reset.text
        for worker in client.get("/v1/workers").json():
            client.delete(f"/v1/workers/{worker['id']}/drain")


def _publish_the_documented_example(url: str) -> None:
    """The document's example job (iris-forest), published: predict and download have a model
    from the start, whatever the fuzzer's own jobs do."""
    example = json.loads((ROOT / "openapi.json").read_text())
    spec = iris_spec("iris-forest")
    assert "iris-forest" in json.dumps(example["components"]["schemas"])
    with httpx.Client(base_url=url, headers=bearer(SUBMIT_TOKEN), timeout=30) as client:
        response = client.post("/v1/jobs", json=spec)
        assert response.status_code == 202, response.text
        assert wait_job(client, response.json()["id"])["state"] == "succeeded"


def test_405_lists_every_documented_method_in_allow() -> None:
    """A method the document does not list for a path is a 405 whose Allow names exactly the
    methods it does list (no server: routing answers before anything else)."""
    document = json.loads((ROOT / "openapi.json").read_text())
    client = TestClient(create_app(Settings(zk_hosts="127.0.0.1:9", tokens=TOKENS)))
    for path, operations in document["paths"].items():
        concrete = re.sub(r"\{[^}]+\}", "x1", path).replace("x1/versions/x1", "x1/versions/1")
        documented = sorted(m.upper() for m in operations)
        others = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} - set(documented)
        for method in sorted(others):
            response = client.request(method, concrete)
            assert response.status_code == 405, (method, path, response.text)
            allowed = sorted(m.strip() for m in response.headers["allow"].split(","))
            assert allowed == documented, (method, path, response.headers)
            assert response.headers["content-type"] == PROBLEM
