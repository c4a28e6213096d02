"""Model (de)serialisation with skops: no pickle, so loading never runs stored code.

skops already trusts scikit-learn estimators, numpy and builtins by default;
TRUSTED_TYPES lists the few extra types the supported algorithms need, and
anything else in a file is refused before a single object is constructed.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import IO, Any

import skops
import skops.io as sio
from skops.io.exceptions import UntrustedTypesFoundException

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
    """The model as a skops file.

    skops writes its schema with ``json.dumps(indent=2)``, which Python can only do with its
    pure-Python encoder (the C one writes compact JSON alone): about half of a small forest's
    dump time, and 40 % of its file. This builds the same file (skops' own zip, state and
    schema, read by skops' own loader) with the schema written compactly; if skops' internals
    it uses ever move, it falls back to ``skops.io.dumps`` (tests/unit/test_ml_modelfile.py
    checks both read back the same).
    """
    try:
        return _compact_dumps(model)
    except (ImportError, AttributeError, TypeError):
        # skops' internals moved (or the model holds what skops refuses: it says so below).
        data: bytes = sio.dumps(model)  # skops ships no types
        return data


def _compact_dumps(model: Any) -> bytes:
    """skops.io.dumps (skops.io._persist._save) with the schema's JSON compact."""
    from skops.io._persist import SaveContext, get_state

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        context = SaveContext(zip_file=archive)
        state = get_state(model, context)
        context.clear_memo()
        state["protocol"] = context.protocol
        state["_skops_version"] = skops.__version__
        archive.writestr("schema.json", json.dumps(state))
    return buffer.getvalue()


def load(file: Path | IO[bytes]) -> Any:
    """loads() from a file (a path, or a file open for reading): read in place, not into
    memory."""
    return _load(file)


def loads(data: bytes) -> Any:
    """Load a model made by dumps(); refuses any type outside skops' defaults and
    TRUSTED_TYPES (UntrustedModelError), and non-skops data (ValueError)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    return _load(io.BytesIO(bytes(data)))


def _load(file: Path | IO[bytes]) -> Any:
    # One pass: skops builds the file's tree of nodes, audits it against its defaults plus
    # ``trusted`` before constructing a single object, and only then constructs. (Asking
    # get_untrusted_types first, then loading, built and audited the tree twice: a fifth of
    # a big forest's load.) Types in TRUSTED_TYPES that a file does not hold change nothing.
    try:
        return sio.load(file, trusted=sorted(TRUSTED_TYPES))
    except UntrustedTypesFoundException:
        # Refused: name the types (skops' message has them only as text), reading it again.
        if not isinstance(file, Path):
            file.seek(0)
        untrusted = sio.get_untrusted_types(file=file)
        raise UntrustedModelError(sorted(set(untrusted) - TRUSTED_TYPES)) from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a skops model file: {exc}") from None
