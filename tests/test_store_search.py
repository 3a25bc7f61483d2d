"""The store's search alone (`matryoshka_rag.store.search`), without Chroma: a fake shortlist over an in-memory
matrix of small-dim vectors, and a read of large-dim vectors that may leave some out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from matryoshka_rag.errors import InputError
from matryoshka_rag.store.search import (
    STAGE_FUNNEL,
    STAGE_WIDENED,
    Found,
    check_shortlist_factors,
    search,
)


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


class Corpus:
    """Records `ids` with unit small `(n, ds)` and large `(n, dl)` vectors; `unacknowledged` ids are found by
    the shortlist but not by `read`. Records the calls."""

    def __init__(
        self, ids: Sequence[str], small: np.ndarray, large: np.ndarray, unacknowledged: Sequence[str] = ()
    ) -> None:
        self.ids, self.small, self.large = list(ids), _unit(small), _unit(large)
        self.unacknowledged = set(unacknowledged)
        self.shortlists: list[int] = []
        self.reads: list[list[str]] = []

    def shortlist(self, vector: np.ndarray, n: int) -> tuple[list[str], np.ndarray]:
        """The `n` records of largest small-dim cosine to `vector`, best first, and those cosines."""
        self.shortlists.append(n)
        cosines = self.small @ vector
        order = np.argsort(-cosines, kind="stable")[:n]
        return [self.ids[i] for i in order], cosines[order]

    def read(self, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Large vectors of the acknowledged `ids`, scaled off unit norm as float16 storage leaves them."""
        self.reads.append(list(ids))
        found = np.array([i not in self.unacknowledged for i in ids], dtype=bool)
        rows = [self.ids.index(i) for i, kept in zip(ids, found) if kept]
        return (self.large[rows] * 1.01).astype(np.float32), found

    def exact(self, query: np.ndarray, k: int) -> list[str]:
        """The top k by large-dim cosine over the acknowledged records, ties by id."""
        scores = self.large @ query
        candidates = [i for i, record_id in enumerate(self.ids) if record_id not in self.unacknowledged]
        return [self.ids[i] for i in sorted(candidates, key=lambda i: (-scores[i], self.ids[i]))[:k]]


def _search(corpus: Corpus, small: np.ndarray, large: np.ndarray, k: int, factor: int, most: int) -> Found:
    return search(_unit(small), _unit(large), k, factor, most, corpus.shortlist, corpus.read)


def test_a_shortlist_covering_the_corpus_gives_exact_search_at_the_large_dim() -> None:
    rng = np.random.default_rng(0)
    corpus = Corpus(
        [f"doc-{i:03d}" for i in range(200)], rng.normal(size=(200, 8)), rng.normal(size=(200, 32))
    )
    for _ in range(5):
        small, large = rng.normal(size=8), rng.normal(size=32)
        found = _search(corpus, small, large, k=10, factor=30, most=160)  # 300 candidates >= 200 records
        assert found.ids == corpus.exact(_unit(large), 10)
        rows = [corpus.ids.index(i) for i in found.ids]
        np.testing.assert_allclose(found.large, corpus.large[rows] @ _unit(large), atol=1e-5)
        np.testing.assert_allclose(found.small, corpus.small[rows] @ _unit(small), atol=1e-12)
        assert found.stages == [STAGE_FUNNEL] * 10 and not found.widened
    assert corpus.shortlists == [300] * 5


def test_widening_finds_a_record_the_first_shortlist_missed() -> None:
    """30 records close to the query at the small dim, the first of them 0.9 at the large dim and the others
    about 0.5, and a needle far at the small dim and identical at the large dim: the first shortlist (k * 1)
    is not conclusive (its tail 0.98 plus its largest rise -0.09 is above its second best, 0.5), nor are the
    wider ones, so it widens (x4) until it holds the needle, reading no record twice."""
    n = 30
    angles = np.arccos(0.99 - 0.01 * np.arange(n))
    small = np.c_[np.cos(angles), np.sin(angles)]
    large_cosines = np.r_[0.9, 0.5 - 0.001 * np.arange(1, n)]
    large = np.c_[large_cosines, np.sqrt(1 - large_cosines**2), np.zeros(n)]
    needle_small, needle_large = [[0.3, np.sqrt(1 - 0.09)]], [[1.0, 0.0, 0.0]]
    ids = [f"near-{i:02d}" for i in range(n)] + ["needle"]
    corpus = Corpus(ids, np.r_[small, needle_small], np.r_[large, needle_large])

    found = _search(corpus, np.array([1.0, 0.0]), np.array([1.0, 0.0, 0.0]), k=2, factor=1, most=64)

    assert found.ids == ["needle", "near-00"] and found.widened
    assert found.stages == [STAGE_WIDENED, STAGE_FUNNEL]  # near-00 was in the first shortlist of 2
    np.testing.assert_allclose(found.large, [1.0, 0.9], atol=1e-6)
    np.testing.assert_allclose(found.small[0], 0.3, atol=1e-12)
    assert corpus.shortlists == [2, 8, 32]  # the last holds every record
    read = [i for batch in corpus.reads for i in batch]
    assert len(read) == len(set(read)) == n + 1


def test_widening_stops_at_the_cap() -> None:
    n = 30
    corpus = Corpus([f"r{i:02d}" for i in range(n)], np.eye(n), np.eye(n))
    _search(corpus, np.ones(n), np.ones(n), k=1, factor=1, most=4)
    assert corpus.shortlists == [1, 4]


def test_ties_are_broken_by_id() -> None:
    large = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    small = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    corpus = Corpus(["c", "a", "b", "d"], small, large)
    found = _search(corpus, np.array([1.0, 0.0]), np.array([1.0, 0.0]), k=2, factor=5, most=5)
    assert found.ids == ["a", "b"]
    assert found.large[0] == found.large[1]


def test_records_that_read_does_not_find_are_left_out() -> None:
    rng = np.random.default_rng(1)
    ids = [f"doc-{i:02d}" for i in range(40)]
    small, large = rng.normal(size=(40, 6)), rng.normal(size=(40, 12))
    query_small, query_large = rng.normal(size=6), rng.normal(size=12)
    complete = _search(Corpus(ids, small, large), query_small, query_large, k=5, factor=10, most=10)
    corpus = Corpus(ids, small, large, unacknowledged=complete.ids[:2])

    found = _search(corpus, query_small, query_large, k=5, factor=10, most=10)

    assert not set(found.ids) & set(complete.ids[:2])
    assert found.ids == corpus.exact(_unit(query_large), 5) and len(found.ids) == 5
    assert len(found.small) == len(found.large) == len(found.stages) == 5


def test_fewer_records_than_k_give_fewer_hits() -> None:
    corpus = Corpus(["x", "y", "z"], np.eye(3), np.eye(3), unacknowledged=["z"])
    found = _search(corpus, np.array([1.0, 0.5, 0.2]), np.array([0.2, 1.0, 0.5]), k=5, factor=2, most=8)
    assert found.ids == ["y", "x"] and found.stages == [STAGE_FUNNEL] * 2 and not found.widened
    empty = _search(Corpus([], np.empty((0, 3)), np.empty((0, 3))), np.ones(3), np.ones(3), 5, 2, 8)
    assert empty.ids == [] and empty.large.shape == empty.small.shape == (0,) and not empty.widened


def test_shortlist_factors_are_checked() -> None:
    assert check_shortlist_factors(30, 160) == (30, 160)
    for factors in ((0, 5), (6, 5)):
        with pytest.raises(InputError, match="need 1 <= shortlist_factor <= max_shortlist_factor"):
            check_shortlist_factors(*factors)
