"""Server-Sent Events of a job: the typed events, the ``text/event-stream`` decoder, and the cursor
that lets a dropped stream resume where it was (``Last-Event-ID``) without yielding an event
twice."""

from __future__ import annotations

import json
from dataclasses import dataclass

from zootrain.records import JobRecord, ShardRecord


class JobEvent(JobRecord):
    """``event: job``: the job record after a change; ``event_id`` is ``<zxid>-<node>``."""

    event_id: str


class ShardEvent(ShardRecord):
    """``event: shard``: one shard record (with its job's id) after a change."""

    job_id: str
    event_id: str


def event_position(event_id: str) -> tuple[int, int] | None:
    """The order of an event id ``<zxid>-<node>`` (a bare ``<zxid>`` is node 0)."""
    zxid, _, node = event_id.partition("-")
    try:
        return int(zxid), int(node or 0)
    except ValueError:
        return None


Event = JobEvent | ShardEvent


@dataclass
class _RawEvent:
    event: str = "message"
    data: str = ""
    id: str | None = None


class _SSEDecoder:
    """Incremental ``text/event-stream`` parser (WHATWG rules), fed one line at a time."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self.last_id: str | None = None

    def feed(self, line: str) -> _RawEvent | None:
        if line == "":
            if not self._data and not self._event:
                self._id = None
                return None
            event = _RawEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return event
        if line.startswith(":"):
            return None  # a comment: keep-alive
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = self.last_id = value
        return None


@dataclass
class _EventCursor:
    """Where a (possibly reconnected) event stream is: its last event id and whether it ended."""

    last_id: str | None = None
    done: bool = False

    def accept(self, raw: _RawEvent) -> Event | None:
        """The typed event, or None for an unknown kind or one already seen (by id)."""
        position = event_position(raw.id) if raw.id is not None else None
        if raw.id is None or position is None:
            return None
        event_id = raw.id
        last = event_position(self.last_id) if self.last_id is not None else None
        if last is not None and position <= last:
            return None  # a repeat: the stream is resumable by id, so never yield one twice
        event: Event
        if raw.event == "job":
            event = JobEvent.model_validate(
                {**json.loads(raw.data), "event_id": event_id},
            )
            self.done = event.state.terminal
        elif raw.event == "shard":
            event = ShardEvent.model_validate(
                {**json.loads(raw.data), "event_id": event_id},
            )
        else:
            self.last_id = event_id
            return None
        self.last_id = event_id
        return event

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": str(self.last_id)} if self.last_id is not None else {}
