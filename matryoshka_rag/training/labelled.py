"""Labelled queries for the supervised stage: their checks, the validation split, and the early-stopping
score (validation nDCG@10)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from ..adaptor.torch_module import MatryoshkaAdaptor
from ..errors import InputError
from ..scoring.metrics import ndcg_at_k
from ..scoring.paired import CLEARLY_SE, clearly_better, standard_error
from .config import Relevance
from .neighbours import exact_search
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


def split_validation(
    n_queries: int, fraction: float, seed: int, minimum: int = 1
) -> tuple[list[int], list[int]]:
    """Deterministic split of query positions into (train, validation): a `fraction` share of them, and at
    least `minimum`, held out (none of one query)."""
    order = torch.randperm(n_queries, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(minimum, 1, int(round(n_queries * fraction))) if n_queries > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def validation_ndcg_per_query(
    adaptor: MatryoshkaAdaptor,
    corpus: torch.Tensor,
    queries: torch.Tensor,
    relevance: Relevance,
    dims: Sequence[int],
    k: int = 10,
) -> dict[int, np.ndarray]:
    """Per dim m of `dims`, nDCG@k `(q,)` of each of `queries (q, dim)` by exact search with the adapted m-dim
    prefixes over `corpus (n, dim)`."""
    adapted_corpus = adapt_all(adaptor, corpus).float()
    adapted_queries = adapt_all(adaptor, queries).float()
    graded: list[dict[Hashable, float]] = [dict(rel.items()) for rel in relevance]  # as ndcg_at_k takes them
    scores = {}
    for m in dims:
        found = exact_search(adapted_queries[:, :m], adapted_corpus[:, :m], k)[1].tolist()
        scores[m] = np.array([ndcg_at_k(row, rel, k) for row, rel in zip(found, graded)])
    return scores


def validation_ndcg(
    adaptor: MatryoshkaAdaptor,
    corpus: torch.Tensor,
    queries: torch.Tensor,
    relevance: Relevance,
    dims: Sequence[int],
    k: int = 10,
) -> float:
    """Mean over `dims` of the mean `validation_ndcg_per_query`: the supervised early-stopping score."""
    per_query = validation_ndcg_per_query(adaptor, corpus, queries, relevance, dims, k)
    return float(np.mean([scores.mean() for scores in per_query.values()]))


def stage_verdict(start: dict[int, np.ndarray], trained: dict[int, np.ndarray]) -> tuple[bool, str, dict]:
    """Whether to keep a supervised stage, from per-query validation nDCG@10 `(q,)` per dim of its start and of
    its trained weights: kept only when at every dim the trained weights are `clearly_better`, the mean of the
    per-query differences above `CLEARLY_SE` standard errors of it (a user cannot check the dim they serve, so
    the stage must be ahead beyond the validation set's noise at each one).
    Returns the verdict, the reason in words, and per dim the start's and the trained mean and standard error."""
    change = {m: trained[m] - start[m] for m in start}
    error = {m: standard_error(d) for m, d in change.items()}
    by_dim = {
        "start": {str(m): float(s.mean()) for m, s in start.items()},
        "trained": {str(m): float(t.mean()) for m, t in trained.items()},
        "standard_error": {str(m): e for m, e in error.items()},
    }
    short = [m for m in start if not clearly_better(trained[m], start[m])]
    if short:
        worst = min(short, key=lambda m: change[m].mean() - CLEARLY_SE * error[m])
        return (
            False,
            (
                f"validation nDCG@10 did not rise by more than {CLEARLY_SE:g} standard errors at dims {short} (at "
                f"{worst}: {trained[worst].mean():.4f} vs {start[worst].mean():.4f}, standard error "
                f"{error[worst]:.4f})"
            ),
            by_dim,
        )
    gain = float(np.mean([d.mean() for d in change.values()]))
    return True, f"validation nDCG@10 rose beyond noise at every dim ({gain:+.4f} on average)", by_dim
