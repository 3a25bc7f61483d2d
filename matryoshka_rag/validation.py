"""Checks on user input (vectors, Matryoshka dims, integers, choices), each rule once, with errors that
name the problem; and unit-norm rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any, get_args

import numpy as np

from .errors import InputError


def check_vectors(vectors: object, expected_dim: int | None = None, what: str = "embeddings") -> np.ndarray:
    """Return `vectors` as a C-contiguous float32 array `(n, dim)` after checking it.

    Raises `InputError` for an empty set, a wrong shape or dim, NaN/inf values or all-zero rows,
    naming the first offending row and how many rows are affected.
    """
    array = float_array(vectors, what)
    _check_shape(array, expected_dim, what)
    check_rows(array, what)
    return np.ascontiguousarray(array)


def float_array(values: object, what: str = "embeddings") -> np.ndarray:
    """`values` as a float32 array; `InputError` naming `what` when they are not numbers of one shape (a
    ragged list, text)."""
    try:
        return np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as error:
        raise InputError(f"{what}: not an array of numbers of one shape ({error})") from error


def _check_shape(array: np.ndarray, expected_dim: int | None, what: str) -> None:
    if array.ndim != 2:
        raise InputError(f"{what}: expected a 2-D array (n, dim), got shape {array.shape}")
    if array.shape[0] == 0:
        raise InputError(f"{what}: no vectors given (empty input)")
    if array.shape[1] == 0:
        raise InputError(f"{what}: vectors are empty (dim 0)")
    if expected_dim is not None and array.shape[1] != expected_dim:
        raise InputError(f"{what}: expected dim {expected_dim}, got vectors of dim {array.shape[1]}")


def check_rows(
    array: np.ndarray,
    what: str = "embeddings",
    chunk_rows: int = 1 << 16,
    row_name: Callable[[int], str] = "row {}".format,
) -> None:
    """Raise `InputError` if rows of `(n, dim)` hold NaN/inf or are all zeros, saying how many and naming
    the first by `row_name(row)` ("row 7" unless given); reads `chunk_rows` at a time, so a memory-mapped
    file is never loaded whole."""
    counts, first = {"nan": 0, "zero": 0}, {}
    for start in range(0, array.shape[0], chunk_rows):
        chunk = np.asarray(array[start : start + chunk_rows])
        for name, bad in (("nan", ~np.isfinite(chunk).all(axis=1)), ("zero", ~chunk.any(axis=1))):
            rows = np.flatnonzero(bad)
            counts[name] += rows.size
            if rows.size and name not in first:
                first[name] = start + int(rows[0])
    for name, problem in (("nan", "hold NaN or inf"), ("zero", "are all zeros")):
        if counts[name]:
            raise InputError(f"{what}: {counts[name]} vector(s) {problem}, first at {row_name(first[name])}")


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows `(n, d)` as float32 of unit L2 norm, scaled in float64 so that rows of tiny (1e-30) or huge
    (1e20) values come out unit too; a zero row stays zero."""
    rows = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def check_int(field: str, value: Any, minimum: int = 1) -> int:
    """`value` as an int; `InputError` naming `field` unless it is an integer (not a bool) >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise InputError(f"{field} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def check_choice(field: str, value: Any, allowed: Any) -> Any:
    """`value`; `InputError` naming `field` and the choices unless it is one of the `Literal` `allowed`'s
    values (`typing.get_args`)."""
    choices = get_args(allowed)
    if value not in choices:
        raise InputError(f"{field} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


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


def check_dims(dims: Sequence[int] | None, base_dim: int) -> tuple[int, ...]:
    """Check Matryoshka dims: positive, strictly increasing, at most `base_dim`; `None` gives
    `default_dims(base_dim)`."""
    checked = default_dims(base_dim) if dims is None else tuple(int(d) for d in dims)
    if not checked:
        raise InputError("dims: at least one Matryoshka dim is needed")
    if any(d <= 0 for d in checked):
        raise InputError(f"dims must be positive, got {list(checked)}")
    if any(b <= a for a, b in zip(checked, checked[1:])):
        raise InputError(f"dims must be strictly increasing, got {list(checked)}")
    if checked[-1] > base_dim:
        raise InputError(f"dims must not exceed the base dim {base_dim}, got {checked[-1]}")
    return checked


def parse_dims(text: str) -> tuple[int, ...]:
    """Parse a comma-separated list such as "32,64,128", checked for order (the base dim is checked later)."""
    try:
        dims = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise InputError(f"dims: expected comma-separated integers, got {text!r}") from error
    return check_dims(dims, max(dims, default=0))
