"""Graded softmax ranking: each prefix puts a query's probability mass on its relevant documents."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .similarity import prefix_cosine_matrices


def graded_softmax_loss(
    queries: torch.Tensor,
    documents: torch.Tensor,
    grades: torch.Tensor,
    dims: Sequence[int],
    temperature: float = 0.05,
) -> torch.Tensor:
    """`sum_m mean_i CE(y_i / sum_j y_ij, softmax(cos(f(q_i)[:m], f(D)[:m]) / t))`.

    Every graded positive of a query shares the target mass in proportion to its grade, so a query's other
    relevant documents are never treated as negatives; every other candidate is a negative.

    Args:
        queries: adapted queries `(queries, out_dim)`.
        documents: adapted candidate documents shared by all queries `(docs, out_dim)`: the whole corpus,
            or positives plus hard and random negatives when the corpus is large.
        grades: relevance of each candidate to each query `(queries, docs)`, >= 0, each row with a positive.
        dims: Matryoshka dims `m`.
        temperature: softmax temperature on cosines.
    """
    target = grades / grades.sum(dim=1, keepdim=True)
    total = queries.new_zeros(())
    for logits in prefix_cosine_matrices(queries, documents, dims, 1 / temperature):
        log_probs = F.log_softmax(logits, dim=1)
        total = total - (target * log_probs).sum(dim=1).mean()
    return total
