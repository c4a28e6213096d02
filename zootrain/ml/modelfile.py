"""Model (de)serialisation with skops: no pickle, so loading never runs stored code.

skops already trusts scikit-learn estimators, numpy and builtins by default;
TRUSTED_TYPES lists the few extra types the supported algorithms need, and
anything else in a file is refused before a single object is constructed.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import skops.io as sio

# Found by dumping every algorithm's fitted shard and merged model and calling
# skops.io.get_untrusted_types (tests/unit/test_ml_modelfile.py re-checks this).
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        # The Cython tree structure inside every DecisionTree*; rebuilt from plain
        # arrays via __setstate__.
        "sklearn.tree._tree.Tree",
    }
)


class UntrustedModelError(ValueError):
    """The model file would construct types zootrain does not trust."""

    def __init__(self, types: list[str]) -> None:
        super().__init__(f"model file contains untrusted types: {', '.join(types)}")
        self.types = types


def dumps(model: Any) -> bytes:
    data: bytes = sio.dumps(model)  # skops ships no types
    return data


def load(path: Path) -> Any:
    """loads() from a file: the checks and the load read it in place, not into memory."""
    return sio.load(path, trusted=_allowed(lambda: sio.get_untrusted_types(file=path)))


def loads(data: bytes) -> Any:
    """Load a model made by dumps(); refuses any type outside skops' defaults and
    TRUSTED_TYPES (UntrustedModelError), and non-skops data (ValueError)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    return sio.loads(data, trusted=_allowed(lambda: sio.get_untrusted_types(data=data)))


def _allowed(untrusted_types: Callable[[], list[str]]) -> list[str]:
    """The types outside skops' defaults that a file holds, for skops to load it: only if every
    one of them is in TRUSTED_TYPES (else UntrustedModelError); ValueError for non-skops data."""
    try:
        untrusted = untrusted_types()
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ValueError(f"not a skops model file: {exc}") from None
    refused = sorted(set(untrusted) - TRUSTED_TYPES)
    if refused:
        raise UntrustedModelError(refused)
    return list(untrusted)
