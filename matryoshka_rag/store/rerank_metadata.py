"""Rerank vectors carried in the searched records' metadata: the server layout, one collection and one HNSW index.

Each record's float16 rerank row (little-endian, zero-padded to a multiple of 3 bytes so that its Base64 has no
padding) is cut into chunks of `CHUNK_BYTES`, each Base64 text under its own reserved key (`row_keys`): a chunk's
960 characters fit one entry of Chroma's sqlite string index without an overflow page. Rows are encoded and
decoded a batch at a time (one Base64 call each way). The searched collection is made with a `Schema` that
switches off the inverted index of those keys (`row_schema`; Chroma's local sqlite still indexes every string,
a server that honours the schema indexes none of them), so no `where` filter can match them. The row is written
in the same upsert as its record, so record and row are replaced and deleted together, and a query's shortlist
search that asks for metadata gets the rows of its candidates in the same call (`reading.search_reads`). Users
never see the keys (`records.user_metadata`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
from chromadb import HnswIndexConfig, Schema, StringInvertedIndexConfig, VectorIndexConfig
from chromadb.api.collection_configuration import CreateHNSWConfiguration
from chromadb.api.models.Collection import Collection

from .records import RESERVED_PREFIX, Documents, Metadatas, Record
from .rerank_homes import fetched, searched_records

__all__ = ["CHUNK_BYTES", "MetadataVectors", "decode_rows", "encode_rows", "row_keys", "row_schema"]

# Base64 of 720 bytes: 960 characters, under sqlite's 1002-byte local payload of an index entry (4 KiB page)
CHUNK_BYTES = 720
_ROW_PREFIX = f"{RESERVED_PREFIX}row"


def _row_bytes(dim: int) -> int:
    """Bytes of a `dim`-dim float16 row padded to a multiple of 3."""
    return -(-2 * dim // 3) * 3


def row_keys(dim: int) -> list[str]:
    """The metadata keys holding the chunks of a `dim`-dim row, in order."""
    return [f"{_ROW_PREFIX}{j}" for j in range(-(-_row_bytes(dim) // CHUNK_BYTES))]


def encode_rows(vectors: np.ndarray) -> list[dict[str, str]]:
    """Rows `(n, dim)` -> one metadata dict per row: its padded float16 bytes as Base64, chunked (`row_keys`)."""
    n, dim = vectors.shape
    raw = np.zeros((n, _row_bytes(dim)), np.uint8)
    raw[:, : 2 * dim] = np.ascontiguousarray(vectors, dtype="<f2").view(np.uint8)
    text = base64.b64encode(raw.tobytes()).decode("ascii")
    width, chunk = _row_bytes(dim) // 3 * 4, CHUNK_BYTES // 3 * 4
    return [
        {
            key: text[row * width + j * chunk : min(row * width + (j + 1) * chunk, (row + 1) * width)]
            for j, key in enumerate(row_keys(dim))
        }
        for row in range(n)
    ]


def decode_rows(metadatas: Sequence[Mapping[str, Any] | None], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The `dim`-dim rows `(m, dim)` float32 carried by `metadatas` `(n,)`, and the `(n,)` mask of those that
    carry one."""
    keys = row_keys(dim)
    found = np.array([m is not None and all(k in m for k in keys) for m in metadatas], dtype=bool)
    text = "".join(m[k] for m, f in zip(metadatas, found) if f and m is not None for k in keys)
    raw = np.frombuffer(base64.b64decode(text), np.uint8).reshape(-1, _row_bytes(dim))
    return raw[:, : 2 * dim].copy().view("<f2").astype(np.float32), found


def row_schema(hnsw: CreateHNSWConfiguration, dim: int) -> Schema:
    """The searched collection's schema: its HNSW space and settings (`hnsw`), no string index of the row keys
    of a `dim`-dim row."""
    settings = {key: value for key, value in hnsw.items() if key != "space"}
    schema = Schema()
    index = VectorIndexConfig(
        space=hnsw.get("space"), embedding_function=None, hnsw=HnswIndexConfig.model_validate(settings)
    )
    schema.create_index(config=index)
    for key in row_keys(dim):
        schema.delete_index(config=StringInvertedIndexConfig(), key=key)
    return schema


class MetadataVectors:
    """Rerank vectors `(n, dim)` in the searched records' metadata (see the module): written with the records,
    deleted with them, read by id or with a shortlist."""

    keeps_records = False

    def __init__(self, searched: Collection, dim: int, location: str) -> None:
        self.searched, self.dim, self.location = searched, dim, location

    @contextmanager
    def writing(self) -> Iterator[None]:
        yield

    def write(
        self, ids: Sequence[str], vectors: np.ndarray, documents: Documents, metadatas: Metadatas
    ) -> list[dict[str, str]]:
        """The row metadata of each id, merged into its record's upsert: nothing is written here."""
        return encode_rows(vectors)

    def acknowledge(self) -> None:
        """Nothing to record: a record and its row are one write."""

    def remove(self, ids: Sequence[str]) -> None:
        """Nothing left: a row is deleted with its record."""

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors `(m, dim)` float32 of the `ids` that have one (in the order of `ids`), and the mask."""
        by_id = fetched(self.searched, ids, "metadatas", self.location)
        return decode_rows([by_id.get(i) for i in ids], self.dim)

    def records(self, ids: Sequence[str]) -> dict[str, Record]:
        """`(document, user metadata)` of the `ids` in the searched collection, by id."""
        return searched_records(self.searched, self.location, ids)

    def compact(self, batch_size: int) -> int:
        """Nothing to reclaim: a replaced or deleted record's row goes with it."""
        return 0

    def drop(self) -> None:
        """Nothing left: the rows went with the searched collection."""
