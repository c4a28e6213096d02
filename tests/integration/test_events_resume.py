"""SSE resume, raw: a stream opened with ``Last-Event-ID`` gets every change after that id that
it has not seen, once each and in order, checked against the job's own history (an uninterrupted
stream of the same job) and against ZooKeeper (each node's last event is its last write)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from kazoo.client import KazooClient

from testkit.stack import Stack, wait_job
from tests.integration.conftest import iris_spec, submit
from zootrain.paths import Paths

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Event:
    id: str
    kind: str
    data: dict[str, Any]

    @property
    def position(self) -> tuple[int, int]:
        zxid, _, node = self.id.partition("-")
        return int(zxid), int(node or 0)

    @property
    def node(self) -> int:
        return self.position[1]

    @property
    def terminal(self) -> bool:
        return self.kind == "job" and self.data["state"] in ("succeeded", "failed", "cancelled")


def stream(
    client: httpx.Client, job_id: str, last_event_id: str | None = None, limit: int | None = None
) -> Iterator[Event]:
    """The job's events, parsed from the raw text/event-stream (no client library between)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers, timeout=120) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        count = 0
        for line in resp.iter_lines():
            if line.startswith(":"):
                continue  # a keep-alive comment
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "id" in fields:
                yield Event(fields["id"], fields["event"], json.loads(fields["data"]))
                count += 1
                if limit is not None and count == limit:
                    return  # closing the response drops the connection
            fields = {}


def last_per_node(events: list[Event]) -> dict[int, Event]:
    found: dict[int, Event] = {}
    for event in events:
        found[event.node] = event
    return found


def test_raw_last_event_id_resumes_without_missing_or_repeating(
    shared_stack: Stack, shared_http: httpx.Client, kazoo: KazooClient
) -> None:
    spec = iris_spec("resumed", dataset={"kind": "builtin", "name": "digits"}, shards=4)
    spec["params"] = {"n_estimators": 20}
    job_id = submit(shared_http, spec)["id"]

    # The job's history as one client saw it, uninterrupted, from the start to its end ...
    history: list[Event] = []
    reader = threading.Thread(target=lambda: history.extend(stream(shared_http, job_id)))
    reader.start()
    # ... and, meanwhile, a client that drops its stream after two events and comes back with
    # the last id it saw, while the job is still running.
    first = list(stream(shared_http, job_id, limit=2))
    cut = first[-1]
    rest = list(stream(shared_http, job_id, last_event_id=cut.id))
    reader.join(180)
    assert not reader.is_alive()
    assert wait_job(shared_http, job_id)["state"] == "succeeded"

    paths = Paths(shared_stack.settings["ZOOTRAIN_ZK_ROOT"])
    nodes = {i: paths.shard(job_id, i) for i in range(4)} | {4: paths.job(job_id)}
    final = {node: kazoo.exists(path).mzxid for node, path in nodes.items()}

    for events in (history, first + rest):
        ids = [e.id for e in events]
        assert len(ids) == len(set(ids)), ids  # nothing repeated
        assert [e.position for e in events] == sorted(e.position for e in events), ids
        assert events[-1].terminal and events[-1].node == 4, events[-1]
        # Each node's last event is its last write in ZooKeeper: nothing after it was missed.
        assert {n: e.position[0] for n, e in last_per_node(events).items()} == final, ids
    assert all(e.position > cut.position for e in rest), ([e.id for e in rest], cut.id)
    for node, zxid in final.items():  # every node that changed after the cut is in the rest
        if (zxid, node) > cut.position:
            assert node in last_per_node(rest), (node, zxid, cut.id)

    # After the end, a resume from any point of the history gets exactly what followed it:
    # each node's final state newer than that point, once, in order, the job's end last.
    ends = last_per_node(history)
    for event in history:
        expected = sorted((e for e in ends.values() if e.position > event.position), key=_pos)
        resumed = list(stream(shared_http, job_id, last_event_id=event.id))
        assert [e.id for e in resumed] == [e.id for e in expected], event.id
        assert [e.data for e in resumed] == [e.data for e in expected], event.id
    # A bare zxid names node 0 of that write; one before every event replays every node.
    first_zxid = history[0].position[0]
    everything = list(stream(shared_http, job_id, last_event_id=str(first_zxid - 1)))
    assert [e.id for e in everything] == [e.id for e in sorted(ends.values(), key=_pos)]


def _pos(event: Event) -> tuple[int, int]:
    return event.position
