"""Where a Matryoshka store keeps its rerank vectors: a file beside an embedded database, or a collection.

Both homes share one interface, used by `retriever.MatryoshkaStore` inside `writing()`:
`write(ids, vectors)` stores the vectors *before* the searched collection's records point at them and
returns the pointer metadata for those records; `acknowledge()` runs after the records are written;
`read(ids, metadatas)` returns the vectors of searched records; `remove(ids)` runs after records are deleted.
"""

from __future__ import annotations

import fcntl
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection

from .chroma_client import chroma_errors
from .rerank_file import RerankFile, RerankFileError

__all__ = ["POINTER_KEY", "RESERVED_PREFIX", "CollectionVectors", "FileVectors", "RerankHome"]

RerankHome = Literal["auto", "file", "collection"]
RESERVED_PREFIX = "mrag:"  # metadata keys of the store's own, hidden from users
POINTER_KEY = f"{RESERVED_PREFIX}ptr"  # record metadata: generation << 40 | row of the rerank file
_ROW_BITS = 40
_ROW_MASK = (1 << _ROW_BITS) - 1


class FileVectors:
    """Rerank vectors as float16 rows in `<folder>/<name>.d<dim>.g<generation>.f16`, pointed at by records.

    Writers hold an exclusive lock on `<folder>/<name>.lock`. The searched collection's metadata records
    the current generation and how many of its rows are acknowledged (`rerank_generation`, `rerank_rows`);
    rows past that which no record points at (a batch cut short by a crash) are cut on the next write.
    `compact()` copies the live rows to a new generation, repoints the records and removes older files.
    """

    def __init__(
        self, folder: Path, name: str, dim: int, client: ClientAPI, collection: Collection, location: str
    ) -> None:
        self.folder, self.name, self.dim, self.location = folder, name, dim, location
        self.client, self.collection = client, collection
        self.store_id = str(collection.metadata["store_id"])
        self._files: dict[int, RerankFile] = {}
        self._generation = int(collection.metadata.get("rerank_generation", 0))
        self._rows = int(collection.metadata.get("rerank_rows", 0))

    def file_path(self, generation: int) -> Path:
        return self.folder / f"{self.name}.d{self.dim}.g{generation}.f16"

    def _file(self, generation: int, create: bool = False) -> RerankFile:
        if generation not in self._files:
            self._files[generation] = RerankFile(self.file_path(generation), self.dim, self.store_id, create)
        return self._files[generation]

    def generations(self) -> list[int]:
        """Generations with a file on disk."""
        pattern = re.compile(re.escape(f"{self.name}.d{self.dim}.g") + r"(\d+)\.f16")
        return sorted(int(m.group(1)) for p in self.folder.glob("*.f16") if (m := pattern.fullmatch(p.name)))

    def _errors(self, action: str):
        return chroma_errors(self.location, action)

    def _record_progress(self) -> None:
        with self._errors("recording the rerank file's progress"):
            metadata = dict(self.collection.metadata)
            metadata.update(rerank_generation=self._generation, rerank_rows=self._rows)
            self.collection.modify(metadata=metadata)

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the write lock; reread the progress and cut an unacknowledged, unreferenced tail first."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{self.name}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with self._errors("reading the store's progress"):
                    self.collection = self.client.get_collection(
                        self.collection.name, embedding_function=None
                    )
                self._generation = int(self.collection.metadata.get("rerank_generation", 0))
                self._rows = int(self.collection.metadata.get("rerank_rows", 0))
                self._reclaim_tail()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _reclaim_tail(self) -> None:
        current = self._file(self._generation, create=True)
        if current.rows <= self._rows:
            return
        base = self._generation << _ROW_BITS
        with self._errors("looking for records past the acknowledged rows"):
            found = self.collection.get(
                where={
                    "$and": [
                        {POINTER_KEY: {"$gte": base + self._rows}},
                        {POINTER_KEY: {"$lt": base + _ROW_MASK}},
                    ]
                },
                include=["metadatas"],
            )
        referenced = [int(m[POINTER_KEY]) & _ROW_MASK for m in found["metadatas"] or []]
        self._rows = max([self._rows, *(row + 1 for row in referenced)])
        current.truncate(self._rows)

    def write(self, ids: Sequence[str], vectors: np.ndarray) -> list[dict[str, Any]]:
        """Append and fsync `vectors` `(n, dim)`; the pointer metadata of each id."""
        rows = self._file(self._generation, create=True).append(ids, vectors.astype(np.float16))
        return [{POINTER_KEY: (self._generation << _ROW_BITS) | int(row)} for row in rows]

    def acknowledge(self) -> None:
        self._rows = self._file(self._generation).rows
        self._record_progress()

    def remove(self, ids: Sequence[str]) -> None:
        """Rows of deleted records stay until `compact()`."""

    def read(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
        """`(n, dim)` float32 vectors of records by their pointer metadata."""
        pointers = []
        for record_id, metadata in zip(ids, metadatas):
            pointer = (metadata or {}).get(POINTER_KEY)
            if not isinstance(pointer, int):
                raise RerankFileError(
                    f"record {record_id!r} has no rerank vector pointer: not written by this store"
                )
            pointers.append(pointer)
        pointers = np.asarray(pointers, dtype=np.int64)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        generations = pointers >> _ROW_BITS
        for generation in np.unique(generations):
            where = np.flatnonzero(generations == generation)
            out[where] = self._file(int(generation)).read(
                pointers[where] & _ROW_MASK, [ids[i] for i in where]
            )
        return out

    def compact(self, batch_size: int) -> int:
        """Copy live rows to a new generation, repoint the records, delete older files; rows reclaimed."""
        with self.writing():
            with self._errors("listing records to compact"):
                found = self.collection.get(include=["metadatas"])
            ids, metadatas = found["ids"], found["metadatas"] or []
            old = self.generations()
            total_before = sum(self._file(g).rows for g in old)
            generation = max([*old, self._generation]) + 1
            target = self._file(generation, create=True)
            for start in range(0, len(ids), batch_size):
                part = slice(start, start + batch_size)
                vectors = self.read(ids[part], metadatas[part])
                rows = target.append(ids[part], vectors.astype(np.float16))
                with self._errors("repointing records to the compacted rerank file"):
                    self.collection.update(
                        ids=ids[part],
                        metadatas=[{POINTER_KEY: (generation << _ROW_BITS) | int(r)} for r in rows],
                    )
            self._generation, self._rows = generation, target.rows
            self._record_progress()
            for stale in old:
                self._files.pop(stale, None)
                self.file_path(stale).unlink(missing_ok=True)
            return total_before - target.rows


class CollectionVectors:
    """Rerank vectors in a second Chroma collection (server mode): written first, deleted last, read by id."""

    def __init__(self, collection: Collection, location: str) -> None:
        self.collection, self.location = collection, location

    @contextmanager
    def writing(self) -> Iterator[None]:
        yield

    def write(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        with chroma_errors(self.location, f"writing rerank vectors to {self.collection.name!r}"):
            self.collection.upsert(ids=list(ids), embeddings=vectors)

    def acknowledge(self) -> None:
        """Nothing to record: the collection is the record."""

    def remove(self, ids: Sequence[str]) -> None:
        with chroma_errors(self.location, f"deleting rerank vectors from {self.collection.name!r}"):
            self.collection.delete(ids=list(ids))

    def read(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
        """`(n, dim)` float32 vectors of `ids` (Chroma returns them in its own order: reordered)."""
        if not ids:
            return np.empty((0, self.collection.metadata["large_dim"]), dtype=np.float32)
        with chroma_errors(self.location, f"reading rerank vectors from {self.collection.name!r}"):
            found = self.collection.get(ids=list(ids), include=["embeddings"])
        by_id = dict(zip(found["ids"], found["embeddings"]))
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise RerankFileError(
                f"{len(missing)} record(s) have no rerank vector in {self.collection.name!r}, first {missing[0]!r}"
            )
        return np.asarray([by_id[i] for i in ids], dtype=np.float32)

    def compact(self, batch_size: int) -> int:
        """Nothing to reclaim: deleted records' vectors are deleted with them."""
        return 0
