"""Labelled queries for the supervised stage: their checks, the validation split, and the early-stopping
score (validation nDCG@10)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..adaptor import MatryoshkaAdaptor
from ..errors import InputError
from ..metrics import ndcg_at_k
from ..neighbours import exact_search
from .config import Relevance
from .ranking import adapt_all


def check_relevance(
    queries: np.ndarray, relevance: Relevance, n_docs: int, what: str
) -> list[dict[int, float]]:
    """`relevance` as `{corpus row: grade > 0}` per query; `InputError` naming `what` for a count unequal to
    `queries (q, dim)`, a query without a positive, or a row outside `range(n_docs)`."""
    if len(queries) != len(relevance):
        raise InputError(f"{what}: {len(queries)} query vectors but {len(relevance)} relevance lists")
    cleaned = []
    for i, rel in enumerate(relevance):
        positives = {int(d): float(g) for d, g in rel.items() if g > 0}
        if not positives:
            raise InputError(f"{what}: query {i} has no relevant document (grade > 0)")
        if any(not 0 <= d < n_docs for d in positives):
            raise InputError(f"{what}: query {i} names a document row outside the corpus (0..{n_docs - 1})")
        cleaned.append(positives)
    return cleaned


def split_validation(n_queries: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic split of query positions into (train, validation)."""
    order = torch.randperm(n_queries, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, int(round(n_queries * fraction))) if n_queries > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def validation_ndcg(
    adaptor: MatryoshkaAdaptor,
    corpus: torch.Tensor,
    queries: torch.Tensor,
    relevance: Relevance,
    dims: Sequence[int],
    k: int = 10,
) -> float:
    """Mean over `dims` of nDCG@k of exact search with adapted prefixes of `queries (q, dim)` over
    `corpus (n, dim)`: the supervised early-stopping score."""
    adapted_corpus = adapt_all(adaptor, corpus).float()
    adapted_queries = adapt_all(adaptor, queries).float()
    scores = []
    for m in dims:
        found = exact_search(adapted_queries[:, :m], adapted_corpus[:, :m], k)[1].tolist()
        scores.append(np.mean([ndcg_at_k(row, rel, k) for row, rel in zip(found, relevance)]))
    return float(np.mean(scores))
