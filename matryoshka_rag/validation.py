"""Checks on user-supplied vectors and Matryoshka dims, with errors that name the problem."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import InputError


def check_vectors(vectors: object, expected_dim: int | None = None, what: str = "embeddings") -> np.ndarray:
    """Return `vectors` as a C-contiguous float32 array `(n, dim)` after checking it.

    Raises `InputError` for an empty set, a wrong shape or dim, NaN/inf values or all-zero rows,
    naming the first offending row and how many rows are affected.
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise InputError(f"{what}: expected a 2-D array (n, dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise InputError(f"{what}: no vectors given (empty input)")
    if array.shape[1] == 0:
        raise InputError(f"{what}: vectors are empty (dim 0)")
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise InputError(f"{what}: expected dim {expected_dim}, got vectors of dim {array.shape[1]}")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(f"{what}: {rows.size} vector(s) hold NaN or inf, first at row {rows[0]}")
    zero = ~array.any(axis=1)
    if zero.any():
        rows = np.flatnonzero(zero)
        raise InputError(f"{what}: {rows.size} vector(s) are all zeros, first at row {rows[0]}")
    return np.ascontiguousarray(array)


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
