"""Submit checks already made: what a child process answered for a spec, kept for the next spec
that asks the very same question.

``validate_submission`` and ``job_cost`` (zootrain.ml) are pure: their answer depends on the
spec's fields and on nothing else (no data is read, no setting, no clock; the child's
scikit-learn is the one it was started with). So a spec that differs from one already accepted
only in fields those checks never read gets the same answer, and a child round trip (the spec
pickled over a socket, parsed again, its parameters checked by scikit-learn) would only repeat
it. Those fields are ``IGNORED``: the model's name, the priority, the time limit and the alias to
publish to (tests/unit/test_checked_specs.py checks that changing them changes no answer).

Only acceptances are kept. A refused spec goes to a child every time, so its 422 names what is
wrong exactly as before; bad input is rare, and keeping it would let a client fill the table.
The table is bounded (least recently used out) and keyed by a digest, so a large spec (a long
parameter grid) costs 32 bytes of key.
"""

from __future__ import annotations

import copy
import hashlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zootrain.ml.cost import Cost
    from zootrain.spec import JobSpec

IGNORED = frozenset({"model_name", "priority", "time_limit", "publish"})
"""Fields of a JobSpec that validate_submission and job_cost never read."""
_EXCLUDED = set(IGNORED)

ENTRIES = 4096

Answer = tuple[dict[str, Any], "Cost"]
"""What the child answered: the fields its checks changed (new values by name), and the cost."""


def question(spec: JobSpec) -> bytes:
    """The digest of what the checks read of ``spec``."""
    return hashlib.blake2b(
        spec.model_dump_json(exclude=_EXCLUDED).encode(), digest_size=32
    ).digest()


class CheckedSpecs:
    def __init__(self, entries: int = ENTRIES) -> None:
        self.entries = entries
        self._answers: OrderedDict[bytes, Answer] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> Answer | None:
        found = self._answers.get(key)
        if found is None:
            self.misses += 1
            return None
        self._answers.move_to_end(key)
        self.hits += 1
        changes, cost = found
        # Every hit gets its own copy of the changed fields (a params dict), as it would from
        # the child, so nothing one job does to its spec reaches another's. Usually there are
        # none; the cost is frozen.
        return (copy.deepcopy(changes) if changes else {}), cost

    def put(self, key: bytes, answer: Answer) -> None:
        if self.entries <= 0:
            return
        changes, cost = answer
        self._answers[key] = (copy.deepcopy(changes), cost)  # the caller keeps its own
        self._answers.move_to_end(key)
        while len(self._answers) > self.entries:
            self._answers.popitem(last=False)

    def __len__(self) -> int:
        return len(self._answers)
