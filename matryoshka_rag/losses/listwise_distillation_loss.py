"""Listwise distillation: each prefix ranks an anchor's candidates like the full embeddings do."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .in_batch_candidates import in_batch_candidates
from .similarity import cosine_matrix, cosine_rows

_MASKED = -1e4  # cosine logit for an anchor against itself: softmax weight exactly 0


def _candidate_logits(
    anchors: torch.Tensor,
    neighbours: torch.Tensor,
    candidates: torch.Tensor,
    self_mask: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Cosines of each anchor `(batch, d)` to the in-batch candidates `(total, d)` but itself (`self_mask`
    `(batch, total)`) and to its own neighbours `(batch, k, d)`: `(batch, total + k)`."""
    in_batch = cosine_matrix(anchors, candidates).masked_fill(self_mask, _MASKED)
    return torch.cat([in_batch, cosine_rows(anchors, neighbours)], dim=1) / temperature


def listwise_distillation_loss(
    base: torch.Tensor,
    base_neighbours: torch.Tensor,
    adapted: torch.Tensor,
    adapted_neighbours: torch.Tensor,
    dims: Sequence[int],
    temperature: float = 0.05,
    *,
    candidates_base: torch.Tensor | None = None,
    candidates_adapted: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """`sum_m mean_i KL(softmax(cos(e_i, C_i) / t) || softmax(cos(f(e_i)[:m], f(C_i)[:m]) / t))`.

    The candidates `C_i` of anchor i are the other items of the batch plus i's k nearest neighbours, so
    the loss sees both the local ranking (neighbours) and the global spread (random batch items). The
    batch items may be a larger set than the anchors given (`candidates_*`: e.g. every data-parallel
    rank's anchors, `distributed.Context.gather_batch`); the mean stays over the anchors given, so the
    losses of disjoint parts of a batch, weighted by their share of the anchors, sum to the whole batch's.

    Args:
        base: original anchors `(batch, dim)`.
        base_neighbours: their k nearest neighbours in the original space `(batch, k, dim)`.
        adapted: `f` of the anchors `(batch, out_dim)`.
        adapted_neighbours: `f` of the neighbours `(batch, k, out_dim)`.
        dims: Matryoshka dims `m`.
        temperature: softmax temperature on cosines.
        candidates_base: the batch items `(total, dim)` that are in-batch candidates, holding the anchors
            `base` at rows `offset .. offset + batch` (each anchor is masked against itself there);
            default: `base` itself (total = batch, offset 0).
        candidates_adapted: `f` of `candidates_base` `(total, out_dim)`; given iff `candidates_base` is.
        offset: row of the first anchor in the candidates.
    """
    candidates_base, candidates_adapted, self_mask = in_batch_candidates(
        base, adapted, candidates_base, candidates_adapted, offset
    )
    target = F.log_softmax(
        _candidate_logits(base, base_neighbours, candidates_base, self_mask, temperature), dim=1
    )
    total = base.new_zeros(())
    for m in dims:
        logits = _candidate_logits(
            adapted[:, :m], adapted_neighbours[:, :, :m], candidates_adapted[:, :m], self_mask, temperature
        )
        total = total + F.kl_div(F.log_softmax(logits, dim=1), target, log_target=True, reduction="batchmean")
    return total
