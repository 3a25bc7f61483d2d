"""L_rank: the paper's pairwise ranking loss for supervised training (paper eq. 4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from .similarity import cosine_rows


def pairwise_rank_loss(
    queries: torch.Tensor,
    documents: torch.Tensor,
    grades: torch.Tensor,
    mask: torch.Tensor,
    dims: Sequence[int],
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """`sum_m sum_i sum_{j,k} 1[y_ij > y_ik] (y_ij - y_ik) log(1 + exp(s_ik[:m] - s_ij[:m]))`.

    Args:
        queries: adapted queries `(queries, out_dim)`.
        documents: each query's adapted candidate documents `(queries, docs, out_dim)`: its relevant
            documents plus negatives (grade 0) drawn from the corpus.
        grades: relevance `y_ij` of each candidate `(queries, docs)`.
        mask: which candidates are real rather than padding `(queries, docs)` bool.
        dims: Matryoshka dims `m`.
        reduction: "sum" is the paper's equation; "mean" averages over the ordered pairs.
    """
    grade_gap = grades[:, :, None] - grades[:, None, :]  # [i, j, k] = y_ij - y_ik
    ordered = (grade_gap > 0) & mask[:, :, None] & mask[:, None, :]
    weight = torch.where(ordered, grade_gap, torch.zeros_like(grade_gap))
    total = queries.new_zeros(())
    for m in dims:
        scores = cosine_rows(queries[:, :m], documents[:, :, :m])
        pair_loss = weight * F.softplus(scores[:, None, :] - scores[:, :, None])  # s_ik - s_ij
        total = total + (
            pair_loss.sum() if reduction == "sum" else pair_loss.sum() / ordered.sum().clamp(min=1)
        )
    return total
