"""L_pair: keep every prefix's pairwise cosines close to the full embeddings' (paper eq. 2)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from .in_batch_candidates import in_batch_candidates
from .similarity import cosine_matrix


def pairwise_similarity_loss(
    base: torch.Tensor,
    adapted: torch.Tensor,
    dims: Sequence[int],
    reduction: Literal["mean", "sum"] = "mean",
    *,
    candidates_base: torch.Tensor | None = None,
    candidates_adapted: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """`sum_m sum_{i != j} |cos(e_i, e_j) - cos(f(e_i)[:m], f(e_j)[:m])|` over a batch.

    i runs over the anchors given and j over the batch items, which may be a larger set than the anchors
    (`candidates_*`: e.g. every data-parallel rank's anchors, `distributed.Context.gather_batch`): the
    losses of disjoint parts of a batch then sum ("sum"), or average weighted by their share of the
    anchors ("mean"), to the whole batch's.

    Args:
        base: original embeddings of the anchors `(batch, dim)`; their full-dim cosines are the target.
        adapted: adaptor outputs `f(e)` `(batch, out_dim)`.
        dims: Matryoshka dims `m`.
        reduction: "sum" is the paper's equation; "mean" averages over the `batch * (total - 1)` pairs
            (then sums over dims).
        candidates_base: the batch items `(total, dim)`, holding the anchors `base` at rows
            `offset .. offset + batch` (an anchor is never paired with itself); default: `base` itself
            (total = batch, offset 0).
        candidates_adapted: `f` of `candidates_base` `(total, out_dim)`; given iff `candidates_base` is.
        offset: row of the first anchor in the candidates.
    """
    candidates_base, candidates_adapted, self_mask = in_batch_candidates(
        base, adapted, candidates_base, candidates_adapted, offset
    )
    target = cosine_matrix(base, candidates_base)
    pairs = self_mask.shape[0] * (self_mask.shape[1] - 1)
    total_loss = base.new_zeros(())
    for m in dims:
        cosines = cosine_matrix(adapted[:, :m], candidates_adapted[:, :m])
        error = (target - cosines).abs().masked_fill(self_mask, 0.0).sum()
        total_loss = total_loss + (error if reduction == "sum" else error / pairs)
    return total_loss
