"""Listwise distillation: each prefix ranks an anchor's candidates like the full embeddings do."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..similarity import cosine_matrix, cosine_rows

_MASKED = -1e4  # cosine logit for an anchor against itself: softmax weight exactly 0


def _candidate_logits(anchors: torch.Tensor, neighbours: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cosines of each anchor to the other batch items and to its own neighbours: `(batch, batch + k)`."""
    self_mask = torch.eye(anchors.shape[0], dtype=torch.bool, device=anchors.device)
    in_batch = cosine_matrix(anchors, anchors).masked_fill(self_mask, _MASKED)
    return torch.cat([in_batch, cosine_rows(anchors, neighbours)], dim=1) / temperature


def listwise_distillation_loss(
    base: torch.Tensor,
    base_neighbours: torch.Tensor,
    adapted: torch.Tensor,
    adapted_neighbours: torch.Tensor,
    dims: Sequence[int],
    temperature: float = 0.05,
) -> torch.Tensor:
    """`sum_m mean_i KL(softmax(cos(e_i, C_i) / t) || softmax(cos(f(e_i)[:m], f(C_i)[:m]) / t))`.

    The candidates `C_i` of anchor i are the other items of the batch plus i's k nearest neighbours, so
    the loss sees both the local ranking (neighbours) and the global spread (random batch items).

    Args:
        base: original anchors `(batch, dim)`.
        base_neighbours: their k nearest neighbours in the original space `(batch, k, dim)`.
        adapted: `f` of the anchors `(batch, out_dim)`.
        adapted_neighbours: `f` of the neighbours `(batch, k, out_dim)`.
        dims: Matryoshka dims `m`.
        temperature: softmax temperature on cosines.
    """
    target = F.log_softmax(_candidate_logits(base, base_neighbours, temperature), dim=1)
    total = base.new_zeros(())
    for m in dims:
        logits = _candidate_logits(adapted[:, :m], adapted_neighbours[:, :, :m], temperature)
        total = total + F.kl_div(F.log_softmax(logits, dim=1), target, log_target=True, reduction="batchmean")
    return total
