"""Where a task's rows come from: a dataset seen as rows in two orders (original and shuffled,
zootrain.ml.columnar), read by position, only the positions asked for.

- ``ArraySource``: a bundled scikit-learn dataset (small: loaded whole), or an uploaded dataset
  stored before the columnar form (its one file is read whole, as it always was);
- ``SyntheticSource``: generated, only the blocks that hold the rows asked for
  (zootrain.ml.synthetic); its generation order is already random, so it is both orders;
- ``ColumnarSource``: an uploaded dataset, reading the row groups that hold the rows and the
  columns its job's plan names, with every chunk checked against the manifest.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import numpy as np

from zootrain.ml.columnar import ROW_COLUMN, Manifest, ParquetReader, permutation
from zootrain.ml.synthetic import Generator

if TYPE_CHECKING:
    from zootrain.artifacts import ArtifactStore
    from zootrain.spec import EncodingPlan

ARRAY_SHUFFLE_SEED = 0
Rows = tuple[np.ndarray, np.ndarray]


class RowSource(ABC):
    n_rows: int

    @abstractmethod
    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """(sorted labels, every row's label code in shuffled order): classification only."""

    @abstractmethod
    def shuffled(self, positions: np.ndarray) -> Rows:
        """(X, y) of the rows at sorted ``positions`` of the shuffled order, in that order."""

    def shuffled_many(self, parts: list[np.ndarray]) -> list[Rows]:
        """shuffled() of several disjoint sorted position arrays (a shard's training rows and
        its held-out slice): a source that reads storage reads a row group they share once."""
        return [self.shuffled(p) for p in parts]

    @abstractmethod
    def original_index(self, positions: np.ndarray) -> np.ndarray:
        """The original row numbers of sorted shuffled ``positions``."""

    @abstractmethod
    def original(self, rows: np.ndarray) -> Rows:
        """(X, y) of sorted original ``rows``."""


class ArraySource(RowSource):
    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        self.X, self.y = X, y
        self.n_rows = len(X)
        self.order = permutation(self.n_rows, ARRAY_SHUFFLE_SEED)

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        classes, codes = np.unique(self.y, return_inverse=True)
        return classes, codes[self.order]

    def shuffled(self, positions: np.ndarray) -> Rows:
        return self.original(self.order[positions])

    def original_index(self, positions: np.ndarray) -> np.ndarray:
        index: np.ndarray = self.order[positions]
        return index

    def original(self, rows: np.ndarray) -> Rows:
        return self.X[rows], self.y[rows]


class SyntheticSource(RowSource):
    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.n_rows = generator.n_rows

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        labels = self.generator.labels()
        classes = np.unique(labels).astype(np.int64)  # the label type the rows carry
        # Synthetic labels are 0 … k-1 already: their codes are themselves.
        if np.array_equal(classes, np.arange(len(classes))):
            return classes, labels.astype(np.int16)
        codes = np.searchsorted(classes, labels).astype(np.int16)
        return classes, codes

    def shuffled(self, positions: np.ndarray) -> Rows:
        return self.generator.rows(positions)

    def original_index(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(positions, dtype=np.int64)

    def original(self, rows: np.ndarray) -> Rows:
        return self.generator.rows(rows)


class ColumnarSource(RowSource):
    def __init__(self, store: ArtifactStore, manifest: Manifest, plan: EncodingPlan) -> None:
        self.store = store
        self.manifest = manifest
        self.plan = plan
        self.n_rows = manifest.rows
        self._readers: dict[str, ParquetReader] = {}

    def _reader(self, which: str) -> ParquetReader:
        if which not in self._readers:
            ref = self.manifest.shuffled if which == "shuffled" else self.manifest.original
            self._readers[which] = ParquetReader(self.store, ref)
        return self._readers[which]

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        from zootrain.ml.tabular import encode_target

        seen: dict[object, int] = {}
        parts: list[np.ndarray] = []
        everything = np.arange(self.n_rows, dtype=np.int64)
        for _, table in self._reader("shuffled").batches([self.plan.target], everything):
            values = encode_target(table.column(0).to_pandas(), self.plan)
            unique, inverse = np.unique(values, return_inverse=True)
            provisional = np.array([seen.setdefault(_plain(v), len(seen)) for v in unique])
            parts.append(provisional[inverse].astype(np.int32))
        keys = list(seen)
        classes = np.unique(np.asarray(keys))
        final = np.empty(len(keys), dtype=np.int32)
        index = {_plain(v): i for i, v in enumerate(classes)}
        for key, code in seen.items():
            final[code] = index[key]
        codes = np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)
        return classes, final[codes]

    def shuffled(self, positions: np.ndarray) -> Rows:
        return self._rows("shuffled", positions)

    def original(self, rows: np.ndarray) -> Rows:
        return self._rows("original", rows)

    def original_index(self, positions: np.ndarray) -> np.ndarray:
        out = np.empty(len(positions), dtype=np.int64)
        done = 0
        for found, table in self._reader("shuffled").batches([ROW_COLUMN], positions):
            out[done : done + len(found)] = table.column(0).to_numpy()
            done += len(found)
        return out

    def shuffled_many(self, parts: list[np.ndarray]) -> list[Rows]:
        return self._rows_many("shuffled", parts)

    def _rows(self, which: str, positions: np.ndarray) -> Rows:
        return self._rows_many(which, [positions])[0]

    def _rows_many(self, which: str, parts: list[np.ndarray]) -> list[Rows]:
        """One pass over the row groups holding any of ``parts``; each row is encoded once,
        one row group at a time, into its part's preallocated matrix."""
        from zootrain.ml.tabular import TableError, encode_features, encode_target

        plan = self.plan
        union = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        owner = np.concatenate([np.full(len(p), k, dtype=np.int32) for k, p in enumerate(parts)])
        local = np.concatenate([np.arange(len(p), dtype=np.int64) for p in parts])
        order = np.argsort(union, kind="stable")
        union, owner, local = union[order], owner[order], local[order]
        if len(union) > 1 and (np.diff(union) == 0).any():
            raise ValueError("row positions must be disjoint")
        Xs = [np.empty((len(p), plan.n_features), dtype=np.float64) for p in parts]
        ys: list[list[np.ndarray]] = [[] for _ in parts]
        done = 0
        for found, table in self._reader(which).batches(plan.columns(), union):
            frame = table.to_pandas()
            X, y = encode_features(frame, plan), encode_target(frame[plan.target], plan)
            owners = owner[done : done + len(found)]
            places = local[done : done + len(found)]
            for k in range(len(parts)):
                mine = owners == k
                Xs[k][places[mine]] = X[mine]
                ys[k].append(y[mine])
            done += len(found)
        if done != len(union):
            raise TableError(f"read {done} of {len(union)} rows")
        return [(X, np.concatenate(y) if y else np.empty(0)) for X, y in zip(Xs, ys, strict=True)]


def _plain(value: object) -> object:
    """A label as a dict key: numpy scalars compare and hash as their Python values."""
    return value.item() if isinstance(value, np.generic) else value
