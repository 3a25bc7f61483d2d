"""The adaptive shortlist's stopping rule, checked against a loop over its inequality."""

from __future__ import annotations

import numpy as np
import pytest

from matryoshka_rag.store.shortlist import shortlist_is_conclusive


def by_loop(small: list[float], large: list[float], k: int) -> bool:
    """t + r < L_k with t = min small, r = max (large - small), L_k = k-th largest large, written out."""
    if len(large) < k:
        return False
    tail = min(small)
    rise = max(lg - sm for sm, lg in zip(small, large))
    kth = sorted(large, reverse=True)[k - 1]
    return tail + rise < kth


def test_matches_the_inequality_on_random_shortlists():
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(500):
        n, k = int(rng.integers(1, 40)), int(rng.integers(1, 12))
        small = rng.uniform(0, 1, n)
        large = small + rng.normal(0, rng.choice([0.01, 0.2]), n)
        outcomes.append(shortlist_is_conclusive(small, large, k))
        assert outcomes[-1] == by_loop(small.tolist(), large.tolist(), k)
    assert 0 < sum(outcomes) < len(outcomes)  # both answers occur, so the comparison means something


def test_examples():
    # the top 2 sit well above anything the tail could reach: conclusive
    assert shortlist_is_conclusive([0.9, 0.8, 0.3], [0.85, 0.75, 0.2], k=2)
    # the tail record rose by 0.48: one just below it could rise as far and reach the 2nd best
    assert not shortlist_is_conclusive([0.9, 0.8, 0.3], [0.85, 0.75, 0.78], k=2)
    assert not shortlist_is_conclusive([0.9], [0.9], k=2)  # fewer than k
    with pytest.raises(ValueError, match="one length"):
        shortlist_is_conclusive([0.1, 0.2], [0.1], k=1)
