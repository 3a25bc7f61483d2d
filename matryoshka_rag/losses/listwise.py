"""Listwise distillation: each prefix ranks an anchor's candidates like the full embeddings do."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..similarity import cosine_matrix, cosine_rows

_MASKED = -1e4  # cosine logit for an anchor against itself: softmax weight exactly 0


def _candidate_logits(
    anchors: torch.Tensor,
    neighbours: torch.Tensor,
    temperature: float,
    candidates: torch.Tensor | None = None,
    offset: int = 0,
) -> torch.Tensor:
    """Cosines of each anchor `(batch, d)` to the in-batch candidates `(total, d)` but itself (anchor i is
    candidate `offset + i`; default: the anchors, offset 0) and to its own neighbours: `(batch, total + k)`."""
    if candidates is None:
        candidates, offset = anchors, 0
    positions = torch.arange(anchors.shape[0], device=anchors.device) + offset
    self_mask = torch.arange(candidates.shape[0], device=anchors.device)[None, :] == positions[:, None]
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
    if (candidates_base is None) != (candidates_adapted is None):
        raise ValueError("candidates_base and candidates_adapted must be given together")
    if candidates_base is not None and not (
        candidates_base.shape[0] == candidates_adapted.shape[0] >= offset + base.shape[0] and offset >= 0
    ):
        raise ValueError(
            f"candidates ({candidates_base.shape[0]}, {candidates_adapted.shape[0]} rows) must hold the "
            f"{base.shape[0]} anchors at rows {offset}.."
        )
    target = F.log_softmax(
        _candidate_logits(base, base_neighbours, temperature, candidates_base, offset), dim=1
    )
    total = base.new_zeros(())
    for m in dims:
        candidates = None if candidates_adapted is None else candidates_adapted[:, :m]
        logits = _candidate_logits(
            adapted[:, :m], adapted_neighbours[:, :, :m], temperature, candidates, offset
        )
        total = total + F.kl_div(F.log_softmax(logits, dim=1), target, log_target=True, reduction="batchmean")
    return total
