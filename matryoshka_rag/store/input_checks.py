"""Checks of the inputs a `MatryoshkaStore` takes (k, ids, lengths, base vectors, queries), shared by the store
itself (so by the CLI's store commands) and by the LangChain and LlamaIndex vector stores over it.

Each check raises :class:`InputError` (or :class:`AdaptorMismatchError` for a base model of the wrong dim)
naming the problem, before anything is embedded or written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import AdaptorMismatchError, InputError
from ..validation import check_int, float_array

__all__ = ["check_base_vectors", "check_k", "check_lengths", "check_query", "check_unique_ids"]


def check_k(k: Any, name: str = "k") -> int:
    """`k` as a positive int, else InputError naming `name` and the value (`validation.check_int`)."""
    return check_int(name, k)


def check_lengths(n: int, what: str, **others: Sequence[Any] | None) -> None:
    """Every sequence in `others` that is not None has `n` items (one per item of `what`)."""
    for name, values in others.items():
        if values is not None and len(values) != n:
            raise InputError(f"got {n} {what} but {len(values)} {name}: give one per item of {what}")


def check_unique_ids(ids: Sequence[Any]) -> list[str]:
    """`ids` as a list of non-empty strings with no repeats (the repeat's positions are named)."""
    first: dict[str, int] = {}
    for i, record_id in enumerate(ids):
        if not isinstance(record_id, str) or not record_id:
            raise InputError(f"id {i} is {record_id!r}: ids must be non-empty strings")
        if record_id in first:
            raise InputError(
                f"id {record_id!r} is repeated in the batch (positions {first[record_id]} and {i})"
            )
        first[record_id] = i
    return list(ids)


def check_base_vectors(vectors: Any, n: int, base_dim: int, model: str) -> np.ndarray:
    """`n` base vectors from `model` as float32 `(n, base_dim)`.

    Raises AdaptorMismatchError naming both dims when the model's vectors are not the adaptor's base dim,
    InputError when the count is not `n` or the vectors are ragged.
    """
    try:
        array = np.asarray(vectors, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise InputError(f"{model} returned vectors of different lengths: {error}") from error
    if array.ndim == 1 and n == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[0] != n:
        raise InputError(f"{model} returned {array.shape[0] if array.ndim else 0} vectors for {n} texts")
    if array.shape[1] != base_dim:
        raise AdaptorMismatchError(
            f"{model} gives {array.shape[1]}-dim vectors but the adaptor's base dim is {base_dim}: "
            "use the embedding model the adaptor was trained on"
        )
    return array


def check_query(query: str | np.ndarray | Sequence[float]) -> str | np.ndarray:
    """A query: a text that is not blank, or one base vector `(d,)` / `(1, d)` as float32 `(1, d)`."""
    if isinstance(query, str):
        if not query.strip():
            raise InputError("the query text is empty")
        return query
    vector = float_array(query, "query")
    if vector.ndim == 1:
        vector = vector[None, :]
    if vector.ndim != 2 or vector.shape[0] != 1:
        raise InputError(f"query must be a text or one base vector, got an array of shape {vector.shape}")
    return vector
