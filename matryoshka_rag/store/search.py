"""A store's search without Chroma: small-dim shortlist -> exact rerank at the large dim -> widening -> top k.

The store hands in its two reads as callables: `shortlist(vector, n)`, the ids and small-dim cosines of up
to `n` records nearest a small-dim query vector, and `read(ids)`, the rerank vectors of those ids that have
an acknowledged one and the mask of which do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .shortlist import shortlist_is_conclusive

__all__ = [
    "STAGE_FUNNEL",
    "STAGE_WIDENED",
    "WIDEN_STEP",
    "Found",
    "Read",
    "Shortlist",
    "check_shortlist_factors",
    "search",
]

STAGE_FUNNEL = "small+rerank"
STAGE_WIDENED = "widened"
WIDEN_STEP = 4  # chosen on validation: benchmarks/shortlist_rule.py
MAX_SHORTLIST = 2**32 - 1  # the most results one shortlist asks for (Chroma's n_results is a u32)

Shortlist = Callable[[np.ndarray, int], tuple[list[str], np.ndarray]]  # (vector, n) -> ids, cosines (m,)
Read = Callable[[list[str]], tuple[np.ndarray, np.ndarray]]  # ids (n,) -> vectors (m, d), found mask (n,)


@dataclass(frozen=True)
class Found:
    """The top k of a search, best first: `ids`, their cosines `small` and `large` `(m,)` at each dim,
    `stages` (`STAGE_FUNNEL`: in the first shortlist, `STAGE_WIDENED`: only in a widened one), and whether the
    shortlist was `widened`."""

    ids: list[str]
    small: np.ndarray
    large: np.ndarray
    stages: list[str]
    widened: bool


def check_shortlist_factors(shortlist_factor: int, max_shortlist_factor: int) -> tuple[int, int]:
    """Both factors as ints, else InputError unless ``1 <= shortlist_factor <= max_shortlist_factor``."""
    if not 1 <= int(shortlist_factor) <= int(max_shortlist_factor):
        raise InputError(
            f"need 1 <= shortlist_factor <= max_shortlist_factor, got {shortlist_factor} and {max_shortlist_factor}"
        )
    return int(shortlist_factor), int(max_shortlist_factor)


def search(
    small_query: np.ndarray,
    large_query: np.ndarray,
    k: int,
    shortlist_factor: int,
    max_shortlist_factor: int,
    shortlist: Shortlist,
    read: Read,
) -> Found:
    """The k records with the largest cosine to `large_query` `(large_dim,)` among those `shortlist` finds
    for `small_query` `(small_dim,)` (both unit-norm).

    The first shortlist holds `shortlist_factor * k` records; it widens (x `WIDEN_STEP`, up to
    `max_shortlist_factor * k`) until `shortlist_is_conclusive` or it holds every record. Records that `read`
    does not find are left out; fewer than k records give fewer. Ties are broken by id.
    """
    n, cap = min(k * shortlist_factor, MAX_SHORTLIST), min(k * max_shortlist_factor, MAX_SHORTLIST)
    first: set[str] | None = None
    reranked: dict[str, float] = {}  # large-dim cosine by id, kept when the shortlist widens
    while True:
        searched, small_scores = shortlist(small_query, n)
        new = [i for i in searched if i not in reranked]
        vectors, found = read(new)
        reranked.update(zip((i for i, f in zip(new, found) if f), _cosines(vectors, large_query)))
        kept = [position for position, i in enumerate(searched) if i in reranked]
        ids, small_scores = [searched[p] for p in kept], np.asarray(small_scores)[kept]
        large_scores = np.array([reranked[i] for i in ids], dtype=np.float64)
        first = set(ids) if first is None else first
        if len(searched) < n or n >= cap or shortlist_is_conclusive(small_scores, large_scores, k):
            break
        n = min(n * WIDEN_STEP, cap)
    best = _top_k(large_scores, ids, k)
    return Found(
        ids=[ids[i] for i in best],
        small=small_scores[best],
        large=large_scores[best],
        stages=[STAGE_FUNNEL if ids[i] in first else STAGE_WIDENED for i in best],
        widened=n > k * shortlist_factor,
    )


def _cosines(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosines `(n,)` of stored rerank rows `(n, d)` (unit-norm when written, rounded since: never zero or
    extreme) with a unit `query` `(d,)`, in float32."""
    rows = np.asarray(vectors, np.float32)
    return (rows @ query) / np.sqrt(np.einsum("ij,ij->i", rows, rows))


def _top_k(scores: np.ndarray, ids: Sequence[str], k: int) -> list[int]:
    """Positions of the `k` largest `scores` `(n,)`, best first; ties by id."""
    if len(ids) > k:
        candidates = np.flatnonzero(scores >= np.partition(scores, len(ids) - k)[len(ids) - k]).tolist()
    else:
        candidates = list(range(len(ids)))
    return sorted(candidates, key=lambda i: (-scores[i], ids[i]))[:k]
