"""Rebuild an embedded store's searched collection from its rerank file (`repair`), losing no acknowledged
record, when Chroma cannot read it (half-saved HNSW files after a kill) or lost its vectors.

What each part gives: the live ids and their row pointers (`POINTER_KEY`) come from Chroma's sqlite tables,
read directly (read-only: `collection.get` fails as the HNSW segment does); the documents, user metadata and
rerank vectors from the rerank file, read by id; the small vectors are recomputed from the rerank vectors
(`large_vectors="base"`: the recorded adaptor's prefix of the base rows; "adapted": their first `small_dim`
values, renormalised). A searchable id without an acknowledged row (never served) is left out and counted.

What was read is first written to a journal (`health.journal_path`, atomically); the collection is then
dropped and created again with its recorded metadata (layout, `store_id`) and HNSW settings, and filled. A
repair killed midway resumes from the journal; the journal goes once the collection is whole. The writer lock
is held throughout.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.collection_configuration import CreateCollectionConfiguration
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Metadata

from ..atomic import atomic_write_text
from ..errors import InputError
from ..validation import unit_rows
from .chroma_client import chroma_errors, connect, database_folder
from .health import journal_path
from .layout import StoreLayout, check_store_name, collection_name, existing_layout, resolve_layout
from .processes import StoreAccess
from .rerank_homes import POINTER_KEY, FileVectors

__all__ = ["Repaired", "repair"]

_HNSW_KEYS = ("space", "ef_construction", "ef_search", "max_neighbors", "resize_factor", "sync_threshold")
_LIVE = """
    SELECT e.embedding_id, m.int_value FROM embeddings e
    JOIN segments s ON s.id = e.segment_id AND s.scope = 'METADATA'
    JOIN collections c ON c.id = s.collection AND c.name = ?
    LEFT JOIN embedding_metadata m ON m.id = e.id AND m.key = ?
    ORDER BY e.seq_id
"""


@dataclass(frozen=True)
class Repaired:
    """What a repair rebuilt: the searched collection's name, how many records it holds again, and how many
    searchable ids it left out for having no acknowledged rerank row (never served: see `health`)."""

    collection: str
    records: int
    unacknowledged: int = 0


def _live_records(database: Path, searched: str) -> tuple[list[str], list[int]]:
    """Ids of the searched collection's records and their rerank row pointers, from Chroma's sqlite."""
    uri = f"file:{database / 'chroma.sqlite3'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as connection:
        rows = connection.execute(_LIVE, (searched, POINTER_KEY)).fetchall()
    missing = [record_id for record_id, pointer in rows if not isinstance(pointer, int)]
    if missing:
        raise InputError(f"record {missing[0]!r} of {searched!r} has no rerank row pointer: cannot repair it")
    return [str(record_id) for record_id, _ in rows], [int(pointer) for _, pointer in rows]


def _read_journal(client: ClientAPI, database: Path, folder: Path, name: str) -> dict[str, Any]:
    """The journal of an interrupted repair, else what Chroma holds of the store, written as the journal."""
    path = journal_path(folder, name)
    if path.exists():
        return cast(dict[str, Any], json.loads(path.read_text(encoding="utf-8")))
    recorded = existing_layout(client, name, str(database))
    if not recorded:
        raise InputError(f"no store {name!r} at {database} to repair")
    if recorded.get("rerank_home") != "file":
        raise InputError(
            f"store {name!r} keeps its rerank vectors in a collection: repair needs the rerank file"
        )
    searched = collection_name(name, int(recorded["small_dim"]))
    with chroma_errors(str(database), f"opening collection {searched!r}"):
        hnsw = client.get_collection(searched, embedding_function=None).configuration_json.get("hnsw") or {}
    ids, pointers = _live_records(database, searched)
    journal = {
        "metadata": recorded,
        "hnsw": {key: hnsw[key] for key in _HNSW_KEYS if key in hnsw},
        "ids": ids,
        "pointers": pointers,
    }
    atomic_write_text(path, json.dumps(journal) + "\n")
    return journal


def _small_vectors(layout: StoreLayout, large: np.ndarray) -> np.ndarray:
    """Rerank rows `(n, large_dim)` -> the unit-norm small vectors `(n, small_dim)` searched for them."""
    if layout.large_vectors == "base":
        return layout.stored_vectors(large)[0]
    return unit_rows(large[:, : layout.small_dim])


def _collection(client: ClientAPI, searched: str, journal: dict[str, Any], location: str) -> Collection:
    """The searched collection as it is (however broken), else created empty as the journal recorded it."""
    configuration: CreateCollectionConfiguration = {"hnsw": journal["hnsw"]}
    with chroma_errors(location, f"opening {searched!r}"):
        return client.get_or_create_collection(
            searched, metadata=journal["metadata"], configuration=configuration, embedding_function=None
        )


def _rebuild(
    client: ClientAPI, name: str, layout: StoreLayout, journal: dict[str, Any], location: str
) -> tuple[int, int]:
    """Drop, create and fill the searched collection with the journalled ids that have an acknowledged rerank
    row; how many it holds, and how many ids had no row."""
    searched, folder = collection_name(name, layout.small_dim), Path(location) / "matryoshka_rag"
    ids, pointers = journal["ids"], journal["pointers"]
    old = _collection(client, searched, journal, location)  # only its store_id is read: Chroma may fail on it
    vectors = FileVectors(folder, name, layout.large_dim, old, location, pointers=pointers)
    _, found = vectors.read(ids)  # a record without an acknowledged row is never served: it is left out
    ids, pointers = [i for i, f in zip(ids, found) if f], [p for p, f in zip(pointers, found) if f]
    with chroma_errors(location, f"creating {searched!r} again"):
        client.delete_collection(searched)
    collection = _collection(client, searched, journal, location)
    batch = int(client.get_max_batch_size())
    for start in range(0, len(ids), batch):
        part, part_pointers = ids[start : start + batch], pointers[start : start + batch]
        large, _ = vectors.read(part)
        records = vectors.records(part)
        metadatas = [{**records[i][1], POINTER_KEY: p} for i, p in zip(part, part_pointers)]
        with chroma_errors(location, f"writing ids {part[0]!r}..{part[-1]!r}"):
            collection.upsert(
                ids=part, embeddings=_small_vectors(layout, large), metadatas=cast(list[Metadata], metadatas)
            )
    with chroma_errors(location, "counting"):
        return collection.count(), len(journal["ids"]) - len(ids)


def repair(name: str, path: str | os.PathLike) -> Repaired:
    """Rebuild the searched collection of the embedded store `name` at `path` from its rerank file (see the
    module); returns what it rebuilt. `StoreLockedError` while another process writes the database."""
    name = check_store_name(name)
    database = database_folder(path).resolve()
    if not (database / "chroma.sqlite3").is_file():
        raise InputError(f"no Chroma database at {database}")
    access = StoreAccess(database, name, read_only=False)
    try:
        client = connect(path=database)
        folder = database / "matryoshka_rag"
        journal = _read_journal(client, database, folder, name)
        layout = resolve_layout(client, name, journal["metadata"], None, None, None, None, None, None)
        records, unacknowledged = _rebuild(client, name, layout, journal, str(database))
        if records != len(journal["ids"]) - unacknowledged:
            raise InputError(
                f"repair of {name!r} wrote {records} records of {len(journal['ids'])}: run it again"
            )
        access.wrote()
        journal_path(folder, name).unlink()
        return Repaired(collection_name(name, layout.small_dim), records, unacknowledged)
    finally:
        access.close()
