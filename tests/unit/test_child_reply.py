"""The prediction process's replies: one that cannot be pickled is still answered."""

from __future__ import annotations

import asyncio
import pickle

from app.child import _send
from app.pool import _HEADER, Reply


class Recorder:
    """What write_frame needs of a StreamWriter, keeping the bytes."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None


def frames(data: bytes) -> list[Reply]:
    found = []
    while data:
        (size,) = _HEADER.unpack(data[: _HEADER.size])
        found.append(pickle.loads(data[_HEADER.size : _HEADER.size + size]))
        data = data[_HEADER.size + size :]
    return found


def test_a_reply_is_sent_as_it_is() -> None:
    writer = Recorder()
    asyncio.run(_send(writer, Reply(7, value=[1, 2])))
    [reply] = frames(writer.data)
    assert (reply.number, reply.value, reply.failure) == (7, [1, 2], None)


def test_a_reply_that_cannot_be_pickled_is_answered_as_a_failure() -> None:
    # Before, the exception ended the task that answered and the caller waited for ever.
    writer = Recorder()
    asyncio.run(_send(writer, Reply(9, value=lambda: None)))
    [reply] = frames(writer.data)
    assert reply.number == 9
    assert reply.value is None
    assert reply.failure is not None and "could not be sent" in reply.failure
