"""Where a Matryoshka store keeps its rerank vectors: a file beside an embedded database, or a second collection
(the other homes: process memory, `rerank_memory`; the searched records' own metadata, `rerank_metadata`).

The homes share one interface (`RerankVectors`), used by `store.MatryoshkaStore` inside `writing()`:
`write(ids, vectors, documents, metadatas)` stores the vectors *before* the searched collection's records
that point at them and returns the metadata to merge into those records (or None); `acknowledge()` runs after
the records are written; `read(ids)` returns the vectors of the ids that have one, and which do;
`remove(ids)` runs after records are deleted; `records(ids)` serves each id's document and metadata; `drop()`
deletes everything the home holds, after the searched collection. A home that `keeps_records` (the file, the
memory) keeps them beside the vectors, merged as Chroma merges an upsert, so a query reads its hits without a
second Chroma call; the collection home leaves them to the searched collection and reads them from there.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import LiteralValue, LogicalOperator, Where, WhereOperator

from ..atomic import atomic_write_text
from .chroma_client import chroma_errors
from .records import RESERVED_PREFIX, Documents, Metadatas, Record, merged_record, stored_records
from .rerank_file import RerankFile, RerankFileError, file_set, id_keys, remove_file_set
from .write_errors import file_writes

__all__ = [
    "POINTER_KEY",
    "RESERVED_PREFIX",
    "CollectionVectors",
    "FileVectors",
    "Record",
    "RerankHome",
    "RerankVectors",
    "decode_record",
    "encode_record",
    "fetched",
    "searched_records",
]

RerankHome = Literal["auto", "file", "memory", "collection", "metadata"]
POINTER_KEY = f"{RESERVED_PREFIX}ptr"  # record metadata: generation << 40 | row of the rerank file
_ROW_BITS = 40
_ROW_MASK = (1 << _ROW_BITS) - 1
_Comparison = dict[WhereOperator | LogicalOperator, LiteralValue]  # a `where` operand such as {"$gte": 3}


class RerankVectors(Protocol):
    """Where a store keeps its rerank vectors `(n, dim)`, and reads its records from (see the module)."""

    keeps_records: bool

    def writing(self) -> AbstractContextManager[None]: ...

    def write(
        self, ids: Sequence[str], vectors: np.ndarray, documents: Documents, metadatas: Metadatas
    ) -> Sequence[Mapping[str, int | str]] | None: ...

    def acknowledge(self) -> None: ...

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]: ...

    def records(self, ids: Sequence[str]) -> dict[str, Record]: ...

    def remove(self, ids: Sequence[str]) -> None: ...

    def compact(self, batch_size: int) -> int: ...

    def drop(self) -> None: ...


def encode_record(record_id: str, record: Record) -> bytes:
    """JSON `[id, document, metadata]`; nothing for a record with neither document nor metadata."""
    if record[0] is None and not record[1]:
        return b""
    return json.dumps([record_id, *record], ensure_ascii=False).encode("utf-8", "surrogatepass")


def decode_record(raw: bytes, record_id: str, path: Path | str) -> Record:
    """The record `encode_record` wrote for `record_id`; `RerankFileError` naming `path` if it is not that."""
    if not raw:
        return None, {}
    try:
        found_id, document, metadata = json.loads(raw.decode("utf-8", "surrogatepass"))
    except (ValueError, UnicodeDecodeError) as error:
        raise RerankFileError(f"the record of id {record_id!r} in {path} is corrupt: {error}") from error
    if found_id != record_id:
        raise RerankFileError(
            f"the record of id {record_id!r} in {path} holds id {found_id!r}: the file was replaced or is "
            "corrupt"
        )
    return document, metadata


class FileVectors:
    """Rerank vectors as float16 rows in `<folder>/<name>.d<dim>.g<generation>.f16` (+ `.keys`), each
    with its record (document and user metadata) in `.rec`.

    `<name>.d<dim>.progress` (JSON, replaced atomically) names the current generation and how many of its
    rows are acknowledged; readers index only those (id key -> latest row), refreshed when it changes.
    Writers hold an exclusive lock on `<folder>/<name>.lock`, write the rows (fsynced) before the searched
    records, and acknowledge them after. Each record's metadata also holds its row's pointer
    (`POINTER_KEY`), read only to recover from a crash: rows past the acknowledged ones are kept when a
    record points at them, else cut (on opening and before each write). `compact()` copies the live rows to
    a new generation, switches the progress file to it (the commit point) and deletes the other files.
    """

    keeps_records = True

    def __init__(
        self,
        folder: Path,
        name: str,
        dim: int,
        collection: Collection,
        location: str,
        create: bool = False,
        pointers: Sequence[int] | None = None,
    ) -> None:
        self.folder, self.name, self.dim, self.location = folder, name, dim, location
        self.collection = collection
        self.store_id = str(collection.metadata["store_id"])
        self.progress_path = folder / f"{name}.d{dim}.progress"
        self._files: dict[int, RerankFile] = {}
        # (mtime_ns, size) of the progress file indexed, its (generation, rows), and the rows in that file
        self._seen: tuple[int, int, int, int, int] | None = None
        self._index = (np.empty(0, np.uint64), np.empty(0, np.int64))
        if create and self._left_by_a_dropped_store():
            self.drop()  # no searchable record points at them: the searched collection is new and empty
        if create and not self.progress_path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            self._write_progress(0, 0)
        with self.writing(pointers):  # recover from a crash before serving anything
            pass

    def _left_by_a_dropped_store(self) -> bool:
        """Whether the progress file names another store of this name: files a `drop()` killed after deleting
        the collection left behind."""
        if not self.progress_path.exists():
            return False
        document = self._progress_document()
        return isinstance(document, dict) and document.get("store_id", self.store_id) != self.store_id

    def file_path(self, generation: int) -> Path:
        return self.folder / f"{self.name}.d{self.dim}.g{generation}.f16"

    def _file(self, generation: int, create: bool = False) -> RerankFile:
        if generation not in self._files:
            self._files[generation] = RerankFile(self.file_path(generation), self.dim, self.store_id, create)
        return self._files[generation]

    def generations(self) -> list[int]:
        """Generations with any of their files (vectors, keys, records) on disk: a compaction killed while it
        removed the old ones can leave some of a generation's files."""
        pattern = re.compile(re.escape(f"{self.name}.d{self.dim}.g") + r"(\d+)\.(f16|keys|rec)")
        return sorted({int(m.group(1)) for p in self.folder.iterdir() if (m := pattern.fullmatch(p.name))})

    def stored_rows(self) -> int:
        """Rows in every whole generation's files, live or not (`compact()` keeps only the live ones)."""
        whole = [g for g in self.generations() if all(p.exists() for p in file_set(self.file_path(g)))]
        return sum(self._file(g).rows for g in whole)

    def _remove_generation(self, generation: int) -> None:
        """Delete every file of an old generation, whichever of them are left."""
        self._files.pop(generation, None)
        with file_writes(self.file_path(generation), "remove the old rerank file"):
            remove_file_set(self.file_path(generation))

    # -- progress ----------------------------------------------------------------------------------

    def _write_progress(self, generation: int, rows: int) -> None:
        document = {"store_id": self.store_id, "generation": generation, "rows": rows}
        with file_writes(self.progress_path, "write the rerank progress file"):
            atomic_write_text(self.progress_path, json.dumps(document) + "\n")

    def _progress_document(self) -> object:
        """The progress file's JSON; `RerankFileError` naming the file if it is missing or corrupt."""
        try:
            return json.loads(self.progress_path.read_text(encoding="utf-8"))
        except FileNotFoundError as error:
            raise RerankFileError(
                f"the rerank progress file {self.progress_path} is missing: the store cannot rerank"
            ) from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RerankFileError(
                f"the rerank progress file {self.progress_path} is corrupt: {error}"
            ) from error

    def progress(self) -> tuple[int, int]:
        """(generation, acknowledged rows) from the progress file."""
        document = self._progress_document()
        if not isinstance(document, dict) or document.get("store_id") != self.store_id:
            raise RerankFileError(
                f"the rerank progress file {self.progress_path} belongs to another store "
                f"({document.get('store_id') if isinstance(document, dict) else document!r}, "
                f"expected {self.store_id})"
            )
        return int(document["generation"]), int(document["rows"])

    def _refresh(self) -> None:
        """Rebuild the id key -> row index when the progress file or the rows written changed: the acknowledged
        rows, and past them those a searched record points at (a batch whose write failed, or was killed,
        after its records were written: whole, so findable; the next write acknowledges it)."""
        try:
            stat = self.progress_path.stat()
        except FileNotFoundError:
            self.progress()  # raises, naming the file
        stamp = (stat.st_mtime_ns, stat.st_size)
        generation, rows = self._seen[2:4] if self._seen and self._seen[:2] == stamp else self.progress()
        written = self._file(generation).rows
        seen = (*stamp, generation, rows, written)
        if seen == self._seen:
            return
        indexed = self._referenced_rows(generation, rows) if written > rows else rows
        keys = self._file(generation).keys(indexed) if indexed else np.empty(0, np.uint64)
        order = np.argsort(keys, kind="stable")
        ordered = keys[order]
        latest = np.r_[ordered[1:] != ordered[:-1], True] if len(ordered) else np.empty(0, bool)
        self._generation, self._index, self._seen = generation, (ordered[latest], order[latest]), seen

    def _referenced_rows(self, generation: int, rows: int, pointers: Sequence[int] | None = None) -> int:
        """`rows`, or one past the last row after them that a searched record points at: the records'
        `pointers` are asked of the searched collection unless given (a repair reads them itself)."""
        base = generation << _ROW_BITS
        if pointers is None:
            at_least: _Comparison = {"$gte": base + rows}
            below: _Comparison = {"$lt": base + _ROW_MASK}
            past: Where = {"$and": [{POINTER_KEY: at_least}, {POINTER_KEY: below}]}
            with chroma_errors(self.location, "looking for records past the acknowledged rows"):
                found = self.collection.get(where=past, include=["metadatas"])
            pointers = [p for m in found["metadatas"] or [] if isinstance(p := m.get(POINTER_KEY), int)]
        referenced = [pointer - base for pointer in pointers if base <= pointer < base + _ROW_MASK]
        return max([rows, *(row + 1 for row in referenced)])

    # -- writing -----------------------------------------------------------------------------------

    @contextmanager
    def writing(self, pointers: Sequence[int] | None = None) -> Iterator[None]:
        """Hold the write lock; cut an unacknowledged tail that no record points at (a crashed batch). The
        records' `pointers` are asked of the searched collection unless given (a repair reads them itself)."""
        lock_path = self.folder / f"{self.name}.lock"
        with file_writes(lock_path, "open the write lock"):
            self.folder.mkdir(parents=True, exist_ok=True)
            lock = open(lock_path, "a+b")  # noqa: SIM115 (closed below, after the lock is given back)
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._recover(pointers)
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _recover(self, pointers: Sequence[int] | None) -> None:
        generation, rows = self.progress()
        current = self._file(generation, create=rows == 0)
        if current.rows > rows:
            rows = self._referenced_rows(generation, rows, pointers)
            current.truncate(rows)
            self._write_progress(generation, rows)
        self._generation, self._rows = generation, rows

    def write(
        self, ids: Sequence[str], vectors: np.ndarray, documents: Documents, metadatas: Metadatas
    ) -> list[dict[str, int]]:
        """Append and fsync `vectors` `(n, dim)` and the ids' records (`_merged`); the pointer metadata of
        each id."""
        raw = [encode_record(i, record) for i, record in zip(ids, self._merged(ids, documents, metadatas))]
        rows = self._file(self._generation).append(ids, vectors.astype(np.float16), raw)
        return [{POINTER_KEY: (self._generation << _ROW_BITS) | int(row)} for row in rows]

    def _merged(self, ids: Sequence[str], documents: Documents, metadatas: Metadatas) -> list[Record]:
        """The ids' records as an upsert leaves them: the new `documents` and `metadatas` merged into the
        stored records (`records.merged_record`) of the ids still searchable (rows stay until compact())."""
        stored = self.records(ids)
        with chroma_errors(self.location, "reading the records to replace"):
            live = set(self.collection.get(ids=list(stored), include=[])["ids"]) if stored else set()
        new_documents = documents if documents is not None else [None] * len(ids)
        return [
            merged_record(stored[i] if i in live else None, document, metadata)
            for i, document, metadata in zip(ids, new_documents, metadatas)
        ]

    def acknowledge(self) -> None:
        self._rows = self._file(self._generation).rows
        self._write_progress(self._generation, self._rows)

    def remove(self, ids: Sequence[str]) -> None:
        """Rows of deleted records stay until `compact()`."""

    def drop(self) -> None:
        """Delete every generation's files, then the progress file. The lock file stays: another process may
        be waiting on it."""
        for generation in self.generations():
            self._remove_generation(generation)
        with file_writes(self.progress_path, "remove the rerank progress file"):
            self.progress_path.unlink(missing_ok=True)

    def compact(self, batch_size: int) -> int:
        """Copy live rows to a new generation, commit it, delete the other files; rows reclaimed."""
        with self.writing():
            with chroma_errors(self.location, "listing records to compact"):
                ids = self.collection.get(include=[])["ids"]
            old, before = self.generations(), self.stored_rows()
            generation = max([*old, self._generation]) + 1
            try:
                target = self._copy_live(ids, generation, batch_size)
                self._write_progress(generation, target.rows)  # the commit point
            except BaseException:
                if self.progress()[0] != generation:  # not committed: a failed copy gives its space back
                    self._remove_generation(generation)
                raise
            for stale in old:
                self._remove_generation(stale)
            self._generation, self._rows = generation, target.rows
            return before - target.rows

    def _copy_live(self, ids: list[str], generation: int, batch_size: int) -> RerankFile:
        """The rows and records of `ids` copied into a new file of `generation`."""
        target = self._file(generation, create=True)
        for start in range(0, len(ids), batch_size):
            part = ids[start : start + batch_size]
            vectors, found = self.read(part)
            kept = [i for i, f in zip(part, found) if f]
            records = self.records(kept)
            target.append(kept, vectors.astype(np.float16), [encode_record(i, records[i]) for i in kept])
        return target

    # -- reading -----------------------------------------------------------------------------------

    def indexed(self) -> int:
        """Number of distinct ids with an acknowledged row (deleted records' rows stay until `compact()`)."""
        self._refresh()
        return len(self._index[0])

    def _locate(self, ids: Sequence[str]) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
        """Of `ids`: the `(n,)` mask of those with an acknowledged row, and those ids, rows and keys `(m,)`."""
        self._refresh()
        keys, rows = self._index
        wanted = id_keys(ids)
        position = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        found = (keys[position] == wanted) if len(keys) else np.zeros(len(ids), bool)
        chosen = np.flatnonzero(found)
        return found, [ids[i] for i in chosen.tolist()], rows[position[chosen]], wanted[chosen]

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors `(m, dim)` float32 of the `ids` with an acknowledged row, and the `(n,)` mask of those."""
        found, chosen, rows, keys = self._locate(ids)
        return self._file(self._generation).read(rows, chosen, keys), found

    def records(self, ids: Sequence[str]) -> dict[str, Record]:
        """`(document, metadata)` of the `ids` with an acknowledged row, by id."""
        _, chosen, rows, keys = self._locate(ids)
        current = self._file(self._generation)
        raw = current.records(rows, chosen, keys)
        return {i: decode_record(r, i, current.records_path) for i, r in zip(chosen, raw)}


def fetched(
    collection: Collection, ids: Sequence[str], field: Literal["embeddings", "metadatas"], location: str
) -> dict[str, Any]:
    """`field` of the `ids` that `collection` holds, by id (Chroma returns them in its own order)."""
    if not ids:
        return {}
    with chroma_errors(location, f"reading {field} from {collection.name!r}"):
        found = collection.get(ids=list(ids), include=[field])
    values = found[field]
    return dict(zip(found["ids"], values if values is not None else []))


def searched_records(searched: Collection, location: str, ids: Sequence[str]) -> dict[str, Record]:
    """`(document, user metadata)` of the `ids` in the searched collection, by id."""
    with chroma_errors(location, "reading records"):
        return stored_records(searched.get(ids=list(ids), include=["documents", "metadatas"]))


class CollectionVectors:
    """Rerank vectors in a second Chroma collection (server mode): written first, deleted last, read by id."""

    keeps_records = False

    def __init__(
        self, collection: Collection, searched: Collection, location: str, client: ClientAPI
    ) -> None:
        self.collection, self.searched, self.location, self.client = collection, searched, location, client

    @contextmanager
    def writing(self) -> Iterator[None]:
        yield

    def write(
        self, ids: Sequence[str], vectors: np.ndarray, documents: Documents, metadatas: Metadatas
    ) -> None:
        """Upsert the vectors; documents and metadatas go to the searched collection (`keeps_records` is
        false)."""
        with chroma_errors(self.location, f"writing rerank vectors to {self.collection.name!r}"):
            self.collection.upsert(ids=list(ids), embeddings=vectors)

    def acknowledge(self) -> None:
        """Nothing to record: the collection is the record."""

    def remove(self, ids: Sequence[str]) -> None:
        with chroma_errors(self.location, f"deleting rerank vectors from {self.collection.name!r}"):
            self.collection.delete(ids=list(ids))

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors `(m, dim)` float32 of the `ids` that have one (in the order of `ids`), and the mask."""
        by_id = fetched(self.collection, ids, "embeddings", self.location)
        vectors = [by_id[i] for i in ids if i in by_id]
        dim = self.collection.metadata["large_dim"]
        return np.asarray(vectors, dtype=np.float32).reshape(-1, dim), np.array(
            [i in by_id for i in ids], bool
        )

    def records(self, ids: Sequence[str]) -> dict[str, Record]:
        """`(document, metadata)` of the `ids` in the searched collection, by id."""
        return searched_records(self.searched, self.location, ids)

    def compact(self, batch_size: int) -> int:
        """Nothing to reclaim: deleted records' vectors are deleted with them."""
        return 0

    def drop(self) -> None:
        """Delete the collection."""
        with chroma_errors(self.location, f"deleting collection {self.collection.name!r}"):
            self.client.delete_collection(self.collection.name)
