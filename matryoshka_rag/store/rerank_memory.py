"""Rerank vectors in process memory, beside an in-memory Chroma (`chromadb.EphemeralClient`): the home
`rerank_home="memory"` (`MemoryVectors`), one of the `rerank_homes.RerankVectors`."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from chromadb.api.models.Collection import Collection

from .records import Documents, Metadatas, Record, merged_record
from .rerank_homes import decode_record, encode_record

__all__ = ["MemoryVectors"]


@dataclass
class _Rows:
    """One in-memory store's rerank rows: `vectors` `(capacity, dim)` float32, of which the first
    `len(records)` rows are used, each row's encoded record (`encode_record`), and the row of each live id."""

    vectors: np.ndarray
    records: list[bytes] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


class MemoryVectors:
    """Rerank vectors as float32 rows in process memory (as Chroma holds its own: a read is an index, no
    conversion), each with its record (as `FileVectors` keeps them), beside an in-memory Chroma
    (`chromadb.EphemeralClient`): a query makes one Chroma call.

    The rows live as long as the process, as Chroma's in-memory collections do (until `drop()`; a searched
    collection deleted through Chroma itself leaves them until the process ends), and every store object of
    the process over the same searched collection (its ``store_id``) shares them, so each sees the others'
    writes. A write holds the rows' lock and stages its rows (`write`), which become readable when the
    searched records are written (`acknowledge`); a replaced id's row is overwritten, a deleted one's freed
    by `compact()`.
    """

    keeps_records = True
    _shared: ClassVar[dict[str, _Rows]] = {}  # store_id -> rows
    _guard = threading.Lock()

    def __init__(self, collection: Collection, dim: int) -> None:
        self.store_id = str(collection.metadata["store_id"])
        with self._guard:
            self.rows = self._shared.setdefault(self.store_id, _Rows(np.empty((0, dim), np.float32)))
        self._staged: tuple[list[str], np.ndarray, list[bytes]] | None = None

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self.rows.lock:
            yield

    def write(
        self, ids: Sequence[str], vectors: np.ndarray, documents: Documents, metadatas: Metadatas
    ) -> None:
        """Stage `vectors` `(n, dim)` and the ids' records as an upsert leaves them (`records.merged_record`)."""
        stored = self.records(ids)
        new_documents = documents if documents is not None else [None] * len(ids)
        records = [
            encode_record(i, merged_record(stored.get(i), document, metadata))
            for i, document, metadata in zip(ids, new_documents, metadatas)
        ]
        self._staged = (list(ids), np.asarray(vectors, np.float32), records)

    def acknowledge(self) -> None:
        """Make the staged rows readable: new ids get new rows, replaced ones are overwritten."""
        if self._staged is None:
            return
        (ids, vectors, records), self._staged = self._staged, None
        rows = self.rows
        new = [i for i in ids if i not in rows.index]
        rows.index.update(zip(new, range(len(rows.records), len(rows.records) + len(new))))
        rows.records.extend([b""] * len(new))
        used, capacity = len(rows.records), len(rows.vectors)
        if used > capacity:  # grow by doubling: appends cost O(1) per row
            grown = np.empty((max(used, 2 * capacity), rows.vectors.shape[1]), np.float32)
            grown[:capacity] = rows.vectors
            rows.vectors = grown
        at = [rows.index[i] for i in ids]
        rows.vectors[at] = vectors
        for row, record in zip(at, records):
            rows.records[row] = record

    def remove(self, ids: Sequence[str]) -> None:
        """Forget the ids' rows (their space is reused after `compact()`)."""
        with self.rows.lock:
            for i in ids:
                if (row := self.rows.index.pop(i, None)) is not None:
                    self.rows.records[row] = b""

    def stored_rows(self) -> int:
        """Rows held, live or not (`compact()` keeps only the live ones)."""
        return len(self.rows.records)

    def compact(self, batch_size: int) -> int:
        """Keep only the live rows; returns how many were freed."""
        with self.rows.lock:
            rows = self.rows
            ids, kept = list(rows.index), list(rows.index.values())
            freed = len(rows.records) - len(kept)
            rows.vectors, rows.records = rows.vectors[kept], [rows.records[row] for row in kept]
            rows.index = dict(zip(ids, range(len(ids))))
            return freed

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors `(m, dim)` float32 of the `ids` with a row (in the order of `ids`), and the `(n,)` mask."""
        with self.rows.lock:
            at = np.fromiter((self.rows.index.get(i, -1) for i in ids), np.int64, len(ids))
            found = at >= 0
            return self.rows.vectors[at[found]], found

    def records(self, ids: Sequence[str]) -> dict[str, Record]:
        """`(document, metadata)` of the `ids` with a row, by id."""
        with self.rows.lock:
            index, records = self.rows.index, self.rows.records
            raw = {i: records[row] for i in ids if (row := index.get(i)) is not None}
        return {i: decode_record(record, i, "process memory") for i, record in raw.items()}

    def drop(self) -> None:
        """Forget every row, for every store object that shares them."""
        with self._guard:
            self._shared.pop(self.store_id, None)
        with self.rows.lock:
            self.rows.vectors, self.rows.records, self.rows.index = self.rows.vectors[:0], [], {}
