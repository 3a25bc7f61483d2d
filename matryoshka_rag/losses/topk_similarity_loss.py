"""L_topk: keep every prefix's cosines to each item's nearest neighbours (paper eq. 1)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from .similarity import cosine_rows


def topk_similarity_loss(
    base: torch.Tensor,
    base_neighbours: torch.Tensor,
    adapted: torch.Tensor,
    adapted_neighbours: torch.Tensor,
    dims: Sequence[int],
    reduction: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """`sum_m sum_i sum_{j in NN_k(i)} |cos(e_i, e_j) - cos(f(e_i)[:m], f(e_j)[:m])|`.

    Args:
        base: original anchors `(batch, dim)`.
        base_neighbours: each anchor's k nearest neighbours in the original space `(batch, k, dim)`,
            found over the whole corpus (see `neighbours.exact_knn`).
        adapted: `f` of the anchors `(batch, out_dim)`.
        adapted_neighbours: `f` of the neighbours `(batch, k, out_dim)`.
        dims: Matryoshka dims `m`.
        reduction: "sum" is the paper's equation; "mean" averages over (anchor, neighbour) pairs.
    """
    target = cosine_rows(base, base_neighbours)
    total = base.new_zeros(())
    for m in dims:
        error = (target - cosine_rows(adapted[:, :m], adapted_neighbours[:, :, :m])).abs()
        total = total + (error.sum() if reduction == "sum" else error.mean())
    return total
