"""Checks on user-supplied vectors and Matryoshka dims, with errors that name the problem."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputError


def check_vectors(vectors: object, expected_dim: int | None = None, what: str = "embeddings") -> np.ndarray:
    """Return `vectors` as a C-contiguous float32 array `(n, dim)` after checking it.

    Raises `InputError` for an empty set, a wrong shape or dim, NaN/inf values or all-zero rows,
    naming the first offending row and how many rows are affected.
    """
    array = np.asarray(vectors, dtype=np.float32)
    _check_shape(array, expected_dim, what)
    check_rows(array, what)
    return np.ascontiguousarray(array)


def _check_shape(array: np.ndarray, expected_dim: int | None, what: str) -> None:
    if array.ndim != 2:
        raise InputError(f"{what}: expected a 2-D array (n, dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise InputError(f"{what}: no vectors given (empty input)")
    if array.shape[1] == 0:
        raise InputError(f"{what}: vectors are empty (dim 0)")
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise InputError(f"{what}: expected dim {expected_dim}, got vectors of dim {array.shape[1]}")


def check_rows(array: np.ndarray, what: str = "embeddings", chunk_rows: int = 1 << 16) -> None:
    """Raise `InputError` if rows of `(n, dim)` hold NaN/inf or are all zeros; reads `chunk_rows` at a time,
    so a memory-mapped file is never loaded whole."""
    counts, first = {"nan": 0, "zero": 0}, {}
    for start in range(0, array.shape[0], chunk_rows):
        chunk = np.asarray(array[start : start + chunk_rows])
        for name, bad in (("nan", ~np.isfinite(chunk).all(axis=1)), ("zero", ~chunk.any(axis=1))):
            rows = np.flatnonzero(bad)
            counts[name] += rows.size
            if rows.size and name not in first:
                first[name] = start + int(rows[0])
    if counts["nan"]:
        raise InputError(f"{what}: {counts['nan']} vector(s) hold NaN or inf, first at row {first['nan']}")
    if counts["zero"]:
        raise InputError(f"{what}: {counts['zero']} vector(s) are all zeros, first at row {first['zero']}")


def open_corpus(corpus: object, what: str = "corpus embeddings") -> np.ndarray:
    """A corpus `(n, dim)` kept where it is: a `.npy` path (opened memory-mapped), an `np.memmap`, or any
    array-like (made a float32 array, as `check_vectors` does).

    Checks only what is cheap (dtype, shape): a memory-mapped corpus must be float32 or float16 and 2-D.
    Call `check_rows` for the values.
    """
    if isinstance(corpus, str | Path):
        try:
            corpus = np.load(corpus, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as error:
            raise InputError(f"{what}: cannot open {str(corpus)!r} as a .npy array ({error})") from error
    if not isinstance(corpus, np.memmap):
        array = np.ascontiguousarray(np.asarray(corpus, dtype=np.float32))
        _check_shape(array, None, what)
        return array
    if corpus.dtype not in (np.float32, np.float16):
        raise InputError(f"{what}: a memory-mapped corpus must be float32 or float16, got {corpus.dtype}")
    _check_shape(corpus, None, what)
    return corpus


def default_dims(base_dim: int, smallest: int = 16) -> tuple[int, ...]:
    """Powers of two from `smallest` below `base_dim`, plus `base_dim` itself (384 -> 16..256, 384)."""
    dims = []
    m = smallest
    while m < base_dim:
        dims.append(m)
        m *= 2
    return (*dims, base_dim)


def check_dims(dims: Sequence[int], base_dim: int) -> tuple[int, ...]:
    """Check Matryoshka dims: positive, strictly increasing, at most `base_dim`."""
    dims = tuple(int(d) for d in dims)
    if not dims:
        raise InputError("dims: at least one Matryoshka dim is needed")
    if any(d <= 0 for d in dims):
        raise InputError(f"dims must be positive, got {list(dims)}")
    if any(b <= a for a, b in zip(dims, dims[1:])):
        raise InputError(f"dims must be strictly increasing, got {list(dims)}")
    if dims[-1] > base_dim:
        raise InputError(f"dims must not exceed the base dim {base_dim}, got {dims[-1]}")
    return dims


def parse_dims(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list such as "32,64,128", checked for order (the base dim is checked later)."""
    try:
        dims = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise InputError(f"dims: expected comma-separated integers, got {text!r}") from error
    return check_dims(dims, max(dims, default=0))
