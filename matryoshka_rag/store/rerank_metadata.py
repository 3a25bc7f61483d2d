"""Rerank vectors carried in the searched records' metadata: the server layout, one collection and one HNSW index.

Each record's rerank row is encoded by the store's row codec (`RowCodec`, recorded in its layout as
`rerank_rows`): "int8" (the default: the unit-norm row scaled so that its largest component is 127 and
rounded, one byte a dim; a decoded row is renormalised, so no scale is kept) or "float16" (two bytes a dim,
what stores made before int8 rows hold). The bytes, little-endian and zero-padded to a multiple of 3 so that
their Base64 has no padding, are cut into chunks of `CHUNK_BYTES`, each Base64 text under its own reserved key
(`row_keys`): a chunk's 960 characters fit one entry of Chroma's sqlite string index without an overflow page
(a 384-d int8 row is one chunk of 512). Rows are encoded and decoded a batch at a time (one Base64 call each
way). The searched collection is made with a `Schema` that switches off the inverted index of those keys
(`row_schema`; Chroma's local sqlite still indexes every string, a server that honours the schema indexes none
of them), so no `where` filter can match them. The row is written in the same upsert as its record, so record
and row are replaced and deleted together, and a query's shortlist search that asks for metadata gets the rows
of its candidates in the same call (`reading.search_reads`). Users never see the keys
(`records.user_metadata`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from chromadb import HnswIndexConfig, Schema, StringInvertedIndexConfig, VectorIndexConfig
from chromadb.api.collection_configuration import CreateHNSWConfiguration
from chromadb.api.models.Collection import Collection

from ..validation import check_choice
from .records import RESERVED_PREFIX, Documents, Metadatas, Record
from .rerank_homes import fetched, searched_records

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_ROW_CODEC",
    "MetadataVectors",
    "RowCodec",
    "decode_rows",
    "encode_rows",
    "recorded_row_codec",
    "row_keys",
    "row_schema",
]

RowCodec = Literal["int8", "float16"]
DEFAULT_ROW_CODEC: RowCodec = "int8"
_UNRECORDED: RowCodec = (
    "float16"  # the rows of a metadata store whose layout records no codec (made before int8)
)
# Base64 of 720 bytes: 960 characters, under sqlite's 1002-byte local payload of an index entry (4 KiB page)
CHUNK_BYTES = 720
_ROW_PREFIX = f"{RESERVED_PREFIX}row"
_DTYPES: dict[RowCodec, str] = {"int8": "i1", "float16": "<f2"}
_INT8_MAX = 127


def recorded_row_codec(recorded: Mapping[str, Any]) -> RowCodec | None:
    """The row codec a store's `recorded` layout names; float16 for a metadata store that names none (made
    before the codec was recorded), None for a store of another home."""
    if recorded.get("rerank_home") != "metadata":
        return None
    return check_choice("rerank_rows", recorded.get("rerank_rows") or _UNRECORDED, RowCodec)


def _row_bytes(dim: int, codec: RowCodec) -> int:
    """Bytes of a `dim`-dim row in `codec`, padded to a multiple of 3."""
    return -(-np.dtype(_DTYPES[codec]).itemsize * dim // 3) * 3


def row_keys(dim: int, codec: RowCodec) -> list[str]:
    """The metadata keys holding the chunks of a `dim`-dim row in `codec`, in order."""
    return [f"{_ROW_PREFIX}{j}" for j in range(-(-_row_bytes(dim, codec) // CHUNK_BYTES))]


def _quantised(vectors: np.ndarray, codec: RowCodec) -> np.ndarray:
    """Rows `(n, dim)` as `codec`'s values `(n, dim)`: float16, or int8 scaled per row to a largest |value| of 127."""
    if codec == "float16":
        return np.asarray(vectors, dtype="<f2")
    rows = np.asarray(vectors, np.float32)
    scale = _INT8_MAX / np.abs(rows).max(axis=1, keepdims=True)
    return np.rint(rows * scale).astype(np.int8)


def encode_rows(vectors: np.ndarray, codec: RowCodec) -> list[dict[str, str]]:
    """Non-zero rows `(n, dim)` -> one metadata dict per row: its `codec` bytes, padded, as Base64, chunked
    (`row_keys`)."""
    n, dim = vectors.shape
    size, width_bytes = _row_bytes(dim, codec), np.dtype(_DTYPES[codec]).itemsize * dim
    raw = np.zeros((n, size), np.uint8)
    raw[:, :width_bytes] = np.ascontiguousarray(_quantised(vectors, codec)).view(np.uint8)
    text = base64.b64encode(raw.tobytes()).decode("ascii")
    width, chunk = size // 3 * 4, CHUNK_BYTES // 3 * 4
    return [
        {
            key: text[row * width + j * chunk : min(row * width + (j + 1) * chunk, (row + 1) * width)]
            for j, key in enumerate(row_keys(dim, codec))
        }
        for row in range(n)
    ]


def decode_rows(
    metadatas: Sequence[Mapping[str, Any] | None], dim: int, codec: RowCodec
) -> tuple[np.ndarray, np.ndarray]:
    """The `dim`-dim rows `(m, dim)` float32 carried by `metadatas` `(n,)` in `codec` (int8 rows renormalised:
    every row was written unit-norm), and the `(n,)` mask of those that carry one."""
    keys = row_keys(dim, codec)
    found = np.array([m is not None and all(k in m for k in keys) for m in metadatas], dtype=bool)
    text = "".join(m[k] for m, f in zip(metadatas, found) if f and m is not None for k in keys)
    raw = np.frombuffer(base64.b64decode(text), np.uint8).reshape(-1, _row_bytes(dim, codec))
    width_bytes = np.dtype(_DTYPES[codec]).itemsize * dim
    rows = raw[:, :width_bytes].copy().view(_DTYPES[codec]).astype(np.float32)
    if codec == "int8":
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows, found


def row_schema(hnsw: CreateHNSWConfiguration, dim: int, codec: RowCodec) -> Schema:
    """The searched collection's schema: its HNSW space and settings (`hnsw`), no string index of the row keys
    of a `dim`-dim row in `codec`."""
    settings = {key: value for key, value in hnsw.items() if key != "space"}
    schema = Schema()
    index = VectorIndexConfig(
        space=hnsw.get("space"), embedding_function=None, hnsw=HnswIndexConfig.model_validate(settings)
    )
    schema.create_index(config=index)
    for key in row_keys(dim, codec):
        schema.delete_index(config=StringInvertedIndexConfig(), key=key)
    return schema


class MetadataVectors:
    """Rerank vectors `(n, dim)` in the searched records' metadata, encoded by `codec` (see the module):
    written with the records, deleted with them, read by id or with a shortlist (`decode`)."""

    keeps_records = False

    def __init__(self, searched: Collection, dim: int, codec: RowCodec, location: str) -> None:
        self.searched, self.dim, self.codec, self.location = searched, dim, codec, location

    @contextmanager
    def writing(self) -> Iterator[None]:
        yield

    def write(
        self, ids: Sequence[str], vectors: np.ndarray, documents: Documents, metadatas: Metadatas
    ) -> list[dict[str, str]]:
        """The row metadata of each id, merged into its record's upsert: nothing is written here."""
        return encode_rows(vectors, self.codec)

    def decode(self, metadatas: Sequence[Mapping[str, Any] | None]) -> tuple[np.ndarray, np.ndarray]:
        """The rows `(m, dim)` float32 that `metadatas` `(n,)` carry, and the `(n,)` mask of those."""
        return decode_rows(metadatas, self.dim, self.codec)

    def read(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors `(m, dim)` float32 of the `ids` that have one (in the order of `ids`), and the mask."""
        by_id = fetched(self.searched, ids, "metadatas", self.location)
        return self.decode([by_id.get(i) for i in ids])

    def acknowledge(self) -> None:
        """Nothing to record: a record and its row are one write."""

    def remove(self, ids: Sequence[str]) -> None:
        """Nothing left: a row is deleted with its record."""

    def records(self, ids: Sequence[str]) -> dict[str, Record]:
        """`(document, user metadata)` of the `ids` in the searched collection, by id."""
        return searched_records(self.searched, self.location, ids)

    def compact(self, batch_size: int) -> int:
        """Nothing to reclaim: a replaced or deleted record's row goes with it."""
        return 0

    def drop(self) -> None:
        """Nothing left: the rows went with the searched collection."""
