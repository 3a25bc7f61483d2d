"""When a small-dim shortlist is long enough: the stopping rule of the store's adaptive shortlist."""

from __future__ import annotations

import numpy as np

__all__ = ["shortlist_is_conclusive"]


def shortlist_is_conclusive(small: np.ndarray, large: np.ndarray, k: int) -> bool:
    """Whether no record outside a shortlist is likely to enter its top k at the large dim.

    A record outside the shortlist has a small-dim cosine of at most ``t = min_i small_i`` (the tail);
    the largest rise seen in the shortlist, ``r = max_i (large_i - small_i)``, estimates how far its
    large-dim cosine can climb above that. The shortlist is conclusive when

        t + r < L_k,    L_k = the k-th largest of ``large``.

    Args:
        small: `(n,)` small-dim cosines of the shortlist's records.
        large: `(n,)` large-dim cosines of the same records.
        k: the number of results asked for; a shortlist of fewer than k records is never conclusive.
    """
    small, large = np.asarray(small, dtype=np.float64), np.asarray(large, dtype=np.float64)
    if small.shape != large.shape or small.ndim != 1:
        raise ValueError(
            f"small and large must be (n,) arrays of one length, got {small.shape}, {large.shape}"
        )
    if len(large) < k:
        return False
    kth_best = np.partition(large, len(large) - k)[len(large) - k]
    return bool(small.min() + (large - small).max() < kth_best)
