"""L_pair: keep every prefix's pairwise cosines close to the full embeddings' (paper eq. 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from ..similarity import cosine_matrix


def pairwise_similarity_loss(
    base: torch.Tensor,
    adapted: torch.Tensor,
    dims: Sequence[int],
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """`sum_m sum_{i != j} |cos(e_i, e_j) - cos(f(e_i)[:m], f(e_j)[:m])|` over a batch.

    Args:
        base: original embeddings `(batch, dim)`; their full-dim cosines are the target.
        adapted: adaptor outputs `f(e)` `(batch, out_dim)`.
        dims: Matryoshka dims `m`.
        reduction: "sum" is the paper's equation; "mean" averages over the pairs (then sums over dims).
    """
    target = cosine_matrix(base, base)
    off_diagonal = ~torch.eye(base.shape[0], dtype=torch.bool, device=base.device)
    total = base.new_zeros(())
    for m in dims:
        error = (target - cosine_matrix(adapted[:, :m], adapted[:, :m])).abs()[off_diagonal]
        total = total + (error.sum() if reduction == "sum" else error.mean())
    return total
