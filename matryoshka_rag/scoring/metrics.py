"""Retrieval metrics with pytrec_eval's (trec_eval's) definitions, as pure functions."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

Qrels = Mapping[str, Mapping[str, int]]
Run = Mapping[str, Mapping[str, float]]
Doc = TypeVar("Doc", bound=Hashable)  # a document id


def ndcg_at_k(ranked: Sequence[Doc], grades: Mapping[Doc, float], k: int = 10) -> float:
    """trec_eval `ndcg_cut.k` of one ranked list: linear gains, `log2(rank + 1)` discount.

    The ideal ranking orders every judged document by grade; documents graded <= 0 gain nothing.
    """
    dcg = sum(max(grades.get(doc, 0), 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[Doc], grades: Mapping[Doc, float], k: int = 100) -> float:
    """trec_eval `recall.k`: share of the documents graded > 0 found in the top k."""
    relevant = {doc for doc, g in grades.items() if g > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def rank_run(scores: Mapping[str, float]) -> list[str]:
    """Order a run's documents as trec_eval does: score descending, ties by doc id descending."""
    return sorted(scores, key=lambda doc: (scores[doc], doc), reverse=True)


def mean_metric(run: Run, qrels: Qrels, metric: str, k: int) -> float:
    """Mean of `ndcg`/`recall` at k over the queries present in both `run` and `qrels`, as pytrec_eval does."""
    metrics: dict[str, Callable[[Sequence[str], Mapping[str, float], int], float]] = {
        "ndcg": ndcg_at_k,
        "recall": recall_at_k,
    }
    function = metrics[metric]
    shared = [q for q in run if q in qrels]
    if not shared:
        return 0.0
    return sum(function(rank_run(run[q]), qrels[q], k) for q in shared) / len(shared)
