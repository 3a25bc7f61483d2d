"""The records a Matryoshka store accepts and serves, and how an upsert merges them with the stored ones.

A record is an id (a non-empty string, unique in its batch), base vectors or a document to embed, and
metadata of values Chroma stores exactly; keys starting with `RESERVED_PREFIX` are the store's own and
hidden from users. Each check raises `InputError` naming the problem before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from chromadb.api.types import GetResult, Metadata

from ..errors import InputError
from ..validation import float_array
from .input_checks import check_unique_ids

__all__ = [
    "RESERVED_PREFIX",
    "Documents",
    "Metadatas",
    "Record",
    "check_documents",
    "check_embeddings",
    "check_ids",
    "check_metadatas",
    "merged_record",
    "stored_records",
    "user_metadata",
]

RESERVED_PREFIX = "mrag:"  # metadata keys of the store's own, hidden from users
_INT64 = (-(2**63), 2**63 - 1)

Record = tuple[str | None, dict[str, Any]]  # a record's document and user metadata
Documents = Sequence[str] | None  # checked documents of a batch, one per id, or none
Metadatas = Sequence[Mapping[str, Any] | None]  # checked metadata of a batch, one per id (None: none)


def check_ids(ids: Sequence[str]) -> list[str]:
    """`ids` as a non-empty list of distinct non-empty strings, else InputError."""
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise InputError(f"ids must be a list of strings, got {type(ids).__name__}")
    if len(ids) == 0:
        raise InputError("ids is empty: nothing to write")
    return check_unique_ids(ids)


def check_documents(texts: Sequence[str] | None, ids: list[str]) -> list[str] | None:
    """`texts` as a list of strings, one per id (None stays None), else InputError."""
    if texts is None:
        return None
    if isinstance(texts, str) or len(texts) != len(ids) or not all(isinstance(t, str) for t in texts):
        raise InputError(f"texts must be a list of {len(ids)} strings (one per id)")
    return list(texts)


def check_embeddings(
    embeddings: np.ndarray | Sequence[Sequence[float]], ids: list[str], base_dim: int
) -> np.ndarray:
    """Base vectors, one per id, as float32 `(n, d)`, else InputError naming the shape expected `(n, base_dim)`
    (the adaptor checks `d`)."""
    base = float_array(embeddings, "embeddings")
    if base.ndim != 2 or base.shape[0] != len(ids):
        raise InputError(f"embeddings must be ({len(ids)}, {base_dim}), got {base.shape}")
    return base


def _metadata_value(value: Any, where: str) -> Any:
    """`value` as Chroma stores it exactly (numpy scalars made Python), or InputError naming `where`."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise InputError(f"{where}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(f"{where}: {value} is not finite (Chroma would drop the whole metadata)")
        return value
    if isinstance(value, (list, tuple)):
        items = [_metadata_value(item, where) for item in value]
        kinds = {type(item) for item in items}
        if not items or len(kinds) != 1 or None in items or kinds & {list}:
            raise InputError(
                f"{where}: a list must be non-empty and hold str, int, float or bool of one type"
            )
        return items
    raise InputError(
        f"{where}: values must be str, int, float, bool, None or a list of one of those, "
        f"got {type(value).__name__}"
    )


def check_metadatas(
    metadatas: Sequence[Mapping[str, Any] | None] | None, ids: list[str]
) -> list[dict[str, Any] | None] | None:
    """Check metadatas against what Chroma stores exactly; returns them ready to write (None or dicts).

    Raises `InputError` naming the id and key of the first bad entry. A None value removes that key on
    upsert (Chroma merges metadata of an existing id); an empty dict means no metadata.
    """
    if metadatas is None:
        return None
    if isinstance(metadatas, Mapping) or not isinstance(metadatas, Sequence) or len(metadatas) != len(ids):
        raise InputError(f"metadatas must be a list of {len(ids)} dicts (one per id) or None")
    checked: list[dict[str, Any] | None] = []
    for record_id, metadata in zip(ids, metadatas):
        if metadata is None or len(metadata) == 0:
            checked.append(None)
            continue
        if not isinstance(metadata, Mapping):
            raise InputError(f"metadata of id {record_id!r} is a {type(metadata).__name__}, not a dict")
        clean = {}
        for key, value in metadata.items():
            where = f"metadata of id {record_id!r}, key {key!r}"
            if (
                not isinstance(key, str)
                or not key
                or key[0] in "#$"
                or key.startswith(("chroma:", RESERVED_PREFIX))
            ):
                raise InputError(
                    f"{where}: keys must be non-empty strings not starting with '#', '$', 'chroma:' or "
                    f"{RESERVED_PREFIX!r} (the store's own)"
                )
            clean[key] = _metadata_value(value, where)
        checked.append(clean)
    return checked if any(m is not None for m in checked) else None


def user_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """A record's metadata without the store's own keys."""
    return {key: value for key, value in (metadata or {}).items() if not key.startswith(RESERVED_PREFIX)}


def stored_records(found: GetResult) -> dict[str, Record]:
    """`(document, user metadata)` by id of the records a Chroma `get` returned."""
    ids = found["ids"]
    documents: Sequence[str | None] = found["documents"] or [None] * len(ids)
    metadatas: Sequence[Metadata | None] = found["metadatas"] or [None] * len(ids)
    return {
        record_id: (document, user_metadata(metadata))
        for record_id, document, metadata in zip(ids, documents, metadatas)
    }


def merged_record(stored: Record | None, document: str | None, metadata: Mapping[str, Any] | None) -> Record:
    """The record an upsert leaves, as Chroma merges it: a new `document` replaces the stored one (None keeps
    it); the keys of `metadata` are set on the stored ones, a None value removing its key."""
    stored_document, merged = stored or (None, {})
    merged = dict(merged)
    for key, value in (metadata or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return (stored_document if document is None else document), merged


def check_where(where: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A Chroma `where` filter as a dict (None when empty); `InputError` for a filter that is not a dict, or
    that names one of the store's own metadata keys (`RESERVED_PREFIX`) at any depth."""
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise InputError(
            f"where must be a dict (a Chroma metadata filter), got {type(where).__name__}: {where!r}"
        )
    _check_filter_keys(where)
    return dict(where) or None


def _check_filter_keys(node: Mapping[str, Any]) -> None:
    for key, value in node.items():
        if isinstance(key, str) and key.startswith(RESERVED_PREFIX):
            raise InputError(f"where names {key!r}, one of the store's own keys: filter on your metadata")
        for child in value if isinstance(value, list) else [value]:
            if isinstance(child, Mapping):
                _check_filter_keys(child)
