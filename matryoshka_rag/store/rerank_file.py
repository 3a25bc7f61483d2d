"""An append-only file of float16 rerank vectors and their records beside a Chroma database, read row by row.

Layout: `<stem>.f16`, a 64-byte header (magic, format version, dim, the owning store's id), then rows of
`dim` float16 values, an 8-byte key of the record id (blake2b), so a row read for an id is checked to be
that id's, and where the row's record (an opaque byte string: the store keeps the document and metadata
there) lies in `<stem>.rec` (offset, size); `<stem>.keys`, the same keys alone (8 bytes a row), from which a
reader builds its id -> row index without touching the vectors. Rows are only appended (records, vectors,
then keys, each fsynced) or cut from the end; `read` and `records` read the rows asked for with `os.pread`:
nothing is mapped or kept in memory.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import InputError
from .write_errors import file_writes

__all__ = ["RerankFile", "RerankFileError", "file_set", "id_keys", "remove_file_set"]

MAGIC = b"MRAGRRK\x00"
VERSION = 2  # 1 had no records
HEADER_SIZE = 64
_HEADER = struct.Struct("<8sII16s")  # magic, version, dim, store id


def file_set(path: Path) -> tuple[Path, Path, Path]:
    """A rerank file's vectors file `path`, its keys file and its records file."""
    return path, path.with_suffix(".keys"), path.with_suffix(".rec")


def remove_file_set(path: Path) -> None:
    """Delete whichever of the vectors, keys and records files of `path` exist (the vectors file last)."""
    for part in reversed(file_set(path)):
        part.unlink(missing_ok=True)


class RerankFileError(InputError):
    """A rerank file that is missing, truncated, or belongs to another store."""


def id_keys(ids: Sequence[str]) -> np.ndarray:
    """`(n,)` uint64 keys of record ids (blake2b, 8 bytes, little-endian), stored beside each row to check
    it."""
    digests = b"".join(
        [hashlib.blake2b(i.encode("utf-8", "surrogatepass"), digest_size=8).digest() for i in ids]
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


class RerankFile:
    """Rows `(dim,)` float16 + id key + record, appended durably; `read(rows, ids)` -> `(n, dim)` float32,
    `records(rows, ids)` -> their records.

    Args:
        path: the file; created (header written and fsynced) when missing and `create` is true.
        dim: the vectors' dim; an existing file of another dim is refused.
        store_id: 32 hex digits naming the store that owns the file; a file of another store is refused.
    """

    def __init__(self, path: str | os.PathLike, dim: int, store_id: str, create: bool = False) -> None:
        self.path, self.dim, self.store_id = Path(path), int(dim), store_id
        _, self.keys_path, self.records_path = file_set(self.path)
        self.row_dtype = np.dtype(
            [("vector", "<f2", (self.dim,)), ("key", "<u8"), ("record_at", "<u8"), ("record_size", "<u4")]
        )
        if not self.path.exists():
            if not create or self.keys_path.exists() and self.keys_path.stat().st_size:
                raise RerankFileError(f"the rerank file {self.path} is missing: the store cannot rerank")
            self._create()
        self._check_header()
        if not self.records_path.exists():
            raise RerankFileError(f"the records file {self.records_path} is missing: the store cannot serve")

    def _create(self) -> None:
        header = _HEADER.pack(MAGIC, VERSION, self.dim, uuid.UUID(self.store_id).bytes).ljust(
            HEADER_SIZE, b"\0"
        )
        with file_writes(self.path, "create the rerank file"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.keys_path.write_bytes(b"")
            self.records_path.write_bytes(b"")
            atomic_write_bytes(self.path, header)  # the file exists only once whole

    def _check_header(self) -> None:
        with open(self.path, "rb") as handle:
            raw = handle.read(HEADER_SIZE)
        if len(raw) < HEADER_SIZE or raw[:8] != MAGIC:
            raise RerankFileError(f"{self.path} is not a matryoshka-rag rerank file (bad header)")
        _, version, dim, store = _HEADER.unpack(raw[: _HEADER.size])
        if version != VERSION:
            raise RerankFileError(
                f"{self.path} has rerank file version {version}, this version of matryoshka-rag reads "
                f"{VERSION}: build the store again (add its records into a new store name)"
            )
        if uuid.UUID(bytes=store).hex != self.store_id:
            raise RerankFileError(
                f"{self.path} belongs to another store (id {uuid.UUID(bytes=store).hex}, expected {self.store_id})"
            )
        if dim != self.dim:
            raise RerankFileError(f"{self.path} holds {dim}-dim vectors, the store reranks at {self.dim}")

    @property
    def rows(self) -> int:
        """Number of whole rows with their key (a row cut short by a crash does not count)."""
        vectors = (self.path.stat().st_size - HEADER_SIZE) // self.row_dtype.itemsize
        try:
            keys = self.keys_path.stat().st_size // 8
        except FileNotFoundError as error:
            raise RerankFileError(f"the rerank key file {self.keys_path} is missing") from error
        return min(vectors, keys)

    def keys(self, stop: int) -> np.ndarray:
        """`(stop,)` uint64 keys of rows `0:stop`, read from the key file."""
        keys = np.fromfile(self.keys_path, dtype="<u8", count=stop)
        if len(keys) < stop:
            raise RerankFileError(
                f"the rerank key file {self.keys_path} is truncated: {len(keys)} of {stop} rows"
            )
        return keys

    def _records_end(self, rows: int) -> int:
        """Where the record of row `rows - 1` ends in the records file (0 for no rows)."""
        if rows == 0:
            return 0
        last = self._rows_at(np.array([rows - 1]))[0]
        return int(last["record_at"]) + int(last["record_size"])

    def append(self, ids: Sequence[str], vectors: np.ndarray, records: Sequence[bytes]) -> np.ndarray:
        """Write `vectors` `(n, dim)` with the keys of `ids` and their `records` after the last whole row;
        fsync before returning.

        Returns the `(n,)` row numbers. A partial row or record left by a crash is overwritten.
        """
        if vectors.shape != (len(ids), self.dim) or len(records) != len(ids):
            raise InputError(
                f"rerank vectors must be ({len(ids)}, {self.dim}) with {len(ids)} records, got "
                f"{vectors.shape} and {len(records)}"
            )
        start = self.rows
        records_start = self._records_end(start)
        sizes = np.array([len(record) for record in records], dtype=np.int64)
        block = np.empty(len(ids), dtype=self.row_dtype)
        block["vector"] = vectors
        block["key"] = id_keys(ids)
        block["record_at"] = records_start + np.cumsum(sizes) - sizes
        block["record_size"] = sizes
        for path, offset, data in (
            (self.records_path, records_start, b"".join(records)),
            (self.path, HEADER_SIZE + start * self.row_dtype.itemsize, block.tobytes()),
            (self.keys_path, start * 8, block["key"].tobytes()),
        ):
            with file_writes(path, "append rerank rows to"), open(path, "r+b") as handle:
                handle.seek(offset)
                handle.write(data)
                handle.truncate()
                handle.flush()
                os.fsync(handle.fileno())
        return np.arange(start, start + len(ids), dtype=np.int64)

    def truncate(self, rows: int) -> None:
        """Cut the file to its first `rows` rows (never below), durably."""
        if rows < self.rows:
            for path, size in (
                (self.path, HEADER_SIZE + rows * self.row_dtype.itemsize),
                (self.keys_path, rows * 8),
                (self.records_path, self._records_end(rows)),
            ):
                with file_writes(path, "cut the unacknowledged rows of"), open(path, "r+b") as handle:
                    handle.truncate(size)
                    os.fsync(handle.fileno())

    def _rows_at(self, rows: np.ndarray) -> np.ndarray:
        """Rows `(n,)` as a structured `(n,)` array, read with `os.pread` (no mapping: the pages stay in the
        page cache, not in this process's memory)."""
        size = self.row_dtype.itemsize
        with open(self.path, "rb", buffering=0) as handle:
            descriptor = handle.fileno()
            data = b"".join(os.pread(descriptor, size, HEADER_SIZE + int(row) * size) for row in rows)
        if len(data) < len(rows) * size:
            raise RerankFileError(
                f"the rerank file {self.path} is truncated: it holds {self.rows} rows, a record points at row "
                f"{int(rows.max())}"
            )
        return np.frombuffer(data, dtype=self.row_dtype)

    def _checked_rows(self, rows: np.ndarray, ids: Sequence[str], keys: np.ndarray | None) -> np.ndarray:
        """Rows `(n,)` read and checked to be those of `ids` (`keys`: `id_keys(ids)`, when known)."""
        if rows.min() < 0:
            raise RerankFileError(f"a record points at row {int(rows.min())} of {self.path}: corrupt pointer")
        found = self._rows_at(rows)
        wrong = np.flatnonzero(found["key"] != (id_keys(ids) if keys is None else keys))
        if wrong.size:
            raise RerankFileError(
                f"row {int(rows[wrong[0]])} of {self.path} is not the vector of id {ids[wrong[0]]!r}: the file "
                "was replaced by another one or is corrupt"
            )
        return found

    def read(self, rows: np.ndarray, ids: Sequence[str], keys: np.ndarray | None = None) -> np.ndarray:
        """The vectors at `rows` `(n,)` as `(n, dim)` float32, each checked to be the row of its id
        (`keys`: `id_keys(ids)`, when the caller has them already)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        return self._checked_rows(rows, ids, keys)["vector"].astype(np.float32)

    def records(self, rows: np.ndarray, ids: Sequence[str], keys: np.ndarray | None = None) -> list[bytes]:
        """The records of the rows `(n,)`, each row checked to be that of its id."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return []
        found = self._checked_rows(rows, ids, keys)
        with open(self.records_path, "rb", buffering=0) as handle:
            records = [
                os.pread(handle.fileno(), int(size), int(at))
                for at, size in zip(found["record_at"], found["record_size"])
            ]
        short = [
            i for i, (record, size) in enumerate(zip(records, found["record_size"])) if len(record) < size
        ]
        if short:
            raise RerankFileError(
                f"the records file {self.records_path} is truncated: the record of id {ids[short[0]]!r} is cut"
            )
        return records
