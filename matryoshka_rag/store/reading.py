"""How a store reads from its searched collection and rerank home: the small-dim shortlist of a query, the ids
matching a filter, stored records and rerank vectors by id."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Include, QueryResult

from ..validation import check_int, unit_rows
from .chroma_client import chroma_errors
from .distances import Space, cosine_from_distance
from .records import Record, check_ids, check_where, stored_records
from .rerank_homes import RerankVectors
from .rerank_metadata import MetadataVectors
from .search import MAX_SHORTLIST, Read, Shortlist

__all__ = ["chosen_ids", "matching_ids", "read_records", "read_rerank_vectors", "search_reads", "shortlist"]


def _search(
    searched: Collection,
    space: Space,
    location: str,
    vector: np.ndarray,
    n: int,
    where: Mapping | None,
    include: Include,
) -> tuple[list[str], np.ndarray, QueryResult]:
    """Ids and cosines `(m,)` of up to `n` records passing `where` nearest `vector` in `searched`, and Chroma's
    answer (`include`: what else it holds)."""
    filters = check_where(where)
    with chroma_errors(location, f"searching {searched.name!r}"):
        found = searched.query(query_embeddings=[vector], n_results=n, where=filters, include=include)
    distances = np.asarray((found["distances"] or [[]])[0], dtype=np.float64)
    return found["ids"][0], cosine_from_distance(distances, space), found


def shortlist(
    searched: Collection, space: Space, location: str, vector: np.ndarray, n: int, where: Mapping | None
) -> tuple[list[str], np.ndarray]:
    """The small-dim search of `vector` `(small_dim,)` in `searched` (HNSW `space`): ids and cosines `(m,)` of
    up to `n` records passing `where`."""
    return _search(searched, space, location, vector, n, where, ["distances"])[:2]


def search_reads(
    searched: Collection, home: RerankVectors, space: Space, location: str, where: Mapping | None
) -> tuple[Shortlist, Read]:
    """The two reads of one query's search (`search.search`): the small-dim shortlist, and the rerank vectors of
    its ids, read from the home, or, when the records carry them (`MetadataVectors`), taken from the shortlist's
    own answer (one Chroma call)."""
    if not isinstance(home, MetadataVectors):
        return functools.partial(shortlist, searched, space, location, where=where), home.read
    rows: dict[str, np.ndarray] = {}  # the rows of every id shortlisted so far

    def carrying_shortlist(vector: np.ndarray, n: int) -> tuple[list[str], np.ndarray]:
        ids, cosines, found = _search(searched, space, location, vector, n, where, ["distances", "metadatas"])
        vectors, carried = home.decode((found["metadatas"] or [[]])[0])
        rows.update(zip((i for i, c in zip(ids, carried) if c), vectors))
        return ids, cosines

    def read(ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        vectors = [rows[i] for i in ids if i in rows]
        return np.asarray(vectors, np.float32).reshape(-1, home.dim), np.array([i in rows for i in ids], bool)

    return carrying_shortlist, read


def read_records(
    searched: Collection,
    home: RerankVectors,
    location: str,
    ids: Sequence[str] | None,
    where: Mapping[str, Any] | None,
    limit: int | None,
) -> dict[str, Record]:
    """Stored `(document, metadata)` by id: of `ids` (those that exist), filtered by `where`, at most `limit`
    (all records when neither ids nor where is given); served by the rerank home where it keeps them."""
    keeps_records = home.keeps_records
    with chroma_errors(location, "reading records"):
        found = searched.get(
            ids=check_ids(ids) if ids is not None else None,
            where=check_where(where),
            limit=None if limit is None else min(check_int("limit", limit, minimum=0), MAX_SHORTLIST),
            include=[] if keeps_records else ["documents", "metadatas"],
        )
    return home.records(found["ids"]) if keeps_records else stored_records(found)


def matching_ids(searched: Collection, location: str, where: Mapping[str, Any] | None) -> list[str]:
    """Ids of the records passing `where` (every record for None)."""
    filters = check_where(where)
    with chroma_errors(location, f"finding records where {filters}" if filters else "listing records"):
        return searched.get(where=filters, include=[])["ids"]


def chosen_ids(
    searched: Collection, location: str, ids: Sequence[str] | None, where: Mapping[str, Any] | None
) -> list[str]:
    """The `ids` (checked) that pass `where`, or every id passing `where` when `ids` is None."""
    chosen = check_ids(ids) if ids is not None else []
    if where is None:
        return chosen
    matched = set(matching_ids(searched, location, where))
    return [i for i in chosen if i in matched] if ids is not None else sorted(matched)


def read_rerank_vectors(
    searched: Collection, home: RerankVectors, location: str, ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """Stored unit-norm rerank vectors `(large_dim,)` of the `ids` (checked) that exist, by id."""
    with chroma_errors(location, "reading records"):
        stored = searched.get(ids=check_ids(ids), include=[])["ids"]
    vectors, found = home.read(stored)
    return dict(zip((i for i, f in zip(stored, found) if f), unit_rows(vectors)))
