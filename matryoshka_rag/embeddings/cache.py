"""On-disk embedding cache: one SQLite file (WAL mode), key = sha256(model name + NUL + text)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["EmbeddingCache", "cache_key", "default_cache_path"]

_CHUNK = 500  # keys per SELECT, below SQLite's bound-parameter limit
_DTYPE = np.dtype("<f4")


def default_cache_path() -> Path:
    """``$MATRYOSHKA_RAG_CACHE`` if set, else ``~/.cache/matryoshka-rag/embeddings.sqlite``."""
    env = os.environ.get("MATRYOSHKA_RAG_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "matryoshka-rag" / "embeddings.sqlite"


def cache_key(model_name: str, text: str) -> bytes:
    """32-byte sha256 digest of ``model_name + "\\0" + text`` (UTF-8); `InputError` for a text that is not
    valid Unicode (a lone surrogate)."""
    try:
        return hashlib.sha256(f"{model_name}\0{text}".encode()).digest()
    except UnicodeEncodeError as error:
        bad = error.object[error.start : error.end]
        raise InputError(
            f"text {text[:60]!r} holds a lone surrogate {bad!r}, not valid Unicode text: it cannot be embedded"
        ) from error


class EmbeddingCache:
    """Float32 vectors keyed by (model name, text), stored in one SQLite file.

    Every :meth:`put_many` call is its own transaction, so a crash loses at most the batch in flight.
    Safe to share between threads (one lock) and processes (SQLite locking, WAL). Usable as a context
    manager; :meth:`close` closes the connection.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                "key BLOB PRIMARY KEY, dim INTEGER NOT NULL, vector BLOB NOT NULL) WITHOUT ROWID"
            )
            self._conn.commit()
        except sqlite3.DatabaseError as exc:
            raise InputError(f"cannot open embedding cache {self.path}: {exc}") from exc

    def get_many(self, model_name: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """Cached vectors for ``texts`` in order: a float32 (d,) array, or None where not cached."""
        keys = [cache_key(model_name, t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            query = f"SELECT key, dim, vector FROM embeddings WHERE key IN ({','.join('?' * len(chunk))})"
            with self._lock:
                rows = self._conn.execute(query, chunk).fetchall()
            for key, dim, blob in rows:
                vector = np.frombuffer(blob, dtype=_DTYPE)
                if vector.shape == (dim,):  # a truncated blob counts as a miss
                    found[key] = vector.astype(np.float32)
        return [found.get(k) for k in keys]

    def put_many(self, model_name: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (n, d) for ``texts`` (n) under ``model_name`` and commit."""
        vectors = np.asarray(vectors, dtype=_DTYPE)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise InputError(f"put_many needs one row per text: {len(texts)} texts, vectors {vectors.shape}")
        rows = [
            (cache_key(model_name, t), vectors.shape[1], vectors[i].tobytes()) for i, t in enumerate(texts)
        ]
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO embeddings (key, dim, vector) VALUES (?, ?, ?)", rows
            )

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"
