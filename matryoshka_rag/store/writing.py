"""How a store writes and deletes records across its two homes, so that a record is findable only once wholly
written: a chunk's rerank vectors (and, in a home that keeps them, its records) first, then the searched
records that point at them, then the home acknowledges them; deleted records (and a dropped store) become
unsearchable first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from chromadb.api import ClientAPI
from chromadb.api.models.Collection import Collection
from chromadb.api.types import Metadata

from .chroma_client import chroma_errors
from .rerank_homes import RerankVectors

__all__ = ["delete_chunk", "drop_homes", "write_chunk"]


def write_chunk(
    searched: Collection,
    home: RerankVectors,
    vectors: tuple[np.ndarray, np.ndarray],
    ids: list[str],
    documents: list[str] | None,
    metadatas: list[dict[str, Any] | None],
    location: str,
) -> None:
    """Upsert one chunk of at most the client's max batch size: `vectors` are its small `(n, small_dim)` and
    rerank `(n, large_dim)` vectors; `ids`, `documents` and `metadatas` are checked (one per id)."""
    small, large = vectors
    with home.writing():
        pointers = home.write(ids, large, documents, metadatas)
        if pointers is not None:
            metadatas = [{**(m or {}), **p} for m, p in zip(metadatas, pointers)]
        # Chroma takes None for a record without metadata (validate_metadata); its stub says Metadata
        written = cast(list[Metadata], metadatas) if any(m is not None for m in metadatas) else None
        with chroma_errors(location, f"writing ids {ids[0]!r}..{ids[-1]!r}"):
            searched.upsert(
                ids=ids,
                embeddings=small,
                metadatas=written,
                documents=None if home.keeps_records else documents,  # else served by the home
            )
        home.acknowledge()


def delete_chunk(searched: Collection, home: RerankVectors, ids: Sequence[str], location: str) -> None:
    """Delete one chunk of records (unknown ids are ignored): from the searched collection, then the home."""
    with home.writing():
        with chroma_errors(location, f"deleting ids {ids[0]!r}.."):
            searched.delete(ids=list(ids))
        home.remove(ids)


def drop_homes(client: ClientAPI, searched: Collection, home: RerankVectors, location: str) -> None:
    """Delete the searched collection, then everything the home holds, under the home's write lock."""
    with home.writing():
        with chroma_errors(location, f"deleting collection {searched.name!r}"):
            client.delete_collection(searched.name)
        home.drop()
