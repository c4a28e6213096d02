"""Bounds an attacker with an ordinary token runs into, against the real job service (uvicorn)."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.auth import READ_TOKEN, SUBMIT_TOKEN, bearer
from testkit.stack import Stack, wait_for
from tests.integration.conftest import assert_problem, iris_spec

pytestmark = pytest.mark.integration

# Real parameters of a random forest, so that nothing but the count can refuse the grids.
FOREST_GRID: dict[str, Any] = {
    "max_depth": list(range(1, 101)),
    "min_samples_leaf": list(range(1, 101)),
    "min_samples_split": list(range(2, 102)),
    "n_estimators": list(range(1, 101)),
    "max_leaf_nodes": list(range(2, 102)),
    "min_impurity_decrease": [i / 1000 for i in range(100)],
}


def grid(keys: int, values: int) -> dict[str, Any]:
    return {name: FOREST_GRID[name][:values] for name in list(FOREST_GRID)[:keys]}


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_an_exploding_grid_is_refused_at_once_while_healthz_keeps_answering(stack: Stack) -> None:
    api = stack.start_api()
    url = stack.api_url
    health: list[int] = []
    done = threading.Event()

    def probe() -> None:
        with httpx.Client(base_url=url or "", timeout=60) as client:
            while not done.is_set():
                health.append(client.get("/healthz").status_code)

    prober = threading.Thread(target=probe)
    prober.start()
    # The refusals take milliseconds: without these waits the prober may not have had one
    # answer before them, nor one after (an empty list proves nothing either way).
    wait_for(lambda: len(health) > 0, 60, "a first /healthz answer")
    try:
        with httpx.Client(base_url=url or "", timeout=60, headers=bearer(SUBMIT_TOKEN)) as client:
            # 4 x 50 = 6.25 million candidates: before, scikit-learn expanded them first (11 s of
            # a blocked event loop, 1.4 GB); 6 x 100 = 10^12 failed inside the expansion (500).
            for keys, values, count in ((4, 50, "6,250,000"), (6, 100, "1,000,000,000,000")):
                spec = iris_spec(kind="search", search={"param_grid": grid(keys, values)})
                started = time.monotonic()
                response = client.post("/v1/jobs", json=spec)
                elapsed = time.monotonic() - started
                assert_problem(response, 422, count, "at most 256")
                # The answer takes milliseconds now; the bound is slack for a loaded machine.
                assert elapsed < 5, elapsed
            listed = client.get("/v1/jobs").json()["items"]
            assert listed == []
        answered = len(health)
        wait_for(lambda: len(health) > answered, 60, "a /healthz answer after the refusals")
    finally:
        done.set()
        prober.join(60)
    assert health and set(health) == {200}, health
    # Nothing was expanded: the service's peak memory is what it was at start-up (~250 MB).
    assert peak_rss_mb(api.popen.pid) < 800, peak_rss_mb(api.popen.pid)


def test_event_streams_are_capped_per_token(stack: Stack) -> None:
    stack.settings["ZOOTRAIN_MAX_EVENT_STREAMS"] = "2"
    stack.start_api()
    with (
        contextlib.ExitStack() as streams,
        httpx.Client(base_url=stack.api_url or "", timeout=60) as client,
    ):
        submitted = client.post("/v1/jobs", json=iris_spec(), headers=bearer(SUBMIT_TOKEN))
        assert submitted.status_code == 202, submitted.text
        events = f"/v1/jobs/{submitted.json()['id']}/events"  # no worker: the job stays queued

        def open_stream(token: str) -> httpx.Response:
            return streams.enter_context(client.stream("GET", events, headers=bearer(token)))

        first, second = open_stream(SUBMIT_TOKEN), open_stream(SUBMIT_TOKEN)
        assert first.status_code == second.status_code == 200
        refused = open_stream(SUBMIT_TOKEN)
        refused.read()
        assert_problem(refused, 429, "test-submit", "ZOOTRAIN_MAX_EVENT_STREAMS")
        assert int(refused.headers["Retry-After"]) >= 1
        # Another token has its own streams.
        assert open_stream(READ_TOKEN).status_code == 200
        # A stream the client closes frees its slot (once the service sees the disconnect).
        first.close()

        wait_for(lambda: _accepts_a_stream(client, events), 30, "a freed stream slot")


def _accepts_a_stream(client: httpx.Client, path: str) -> bool:
    with client.stream("GET", path, headers=bearer(SUBMIT_TOKEN)) as response:
        return response.status_code == 200
