"""In-batch candidates of the losses that compare each anchor with the other items of a batch."""

from __future__ import annotations

import torch


def in_batch_candidates(
    base: torch.Tensor,
    adapted: torch.Tensor,
    candidates_base: torch.Tensor | None,
    candidates_adapted: torch.Tensor | None,
    offset: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Checked candidates `(total, dim)`, `(total, out_dim)` and the self mask `(batch, total)`, True where
    anchor i meets itself (candidate `offset + i`).

    Args:
        base, adapted: the anchors `(batch, dim)` and `f` of them `(batch, out_dim)`.
        candidates_base, candidates_adapted: the batch items holding the anchors at rows
            `offset .. offset + batch` (e.g. every data-parallel rank's anchors), given together, or both
            None for the anchors themselves (offset 0).
    """
    if candidates_base is None and candidates_adapted is None:
        candidates_base, candidates_adapted, offset = base, adapted, 0
    elif candidates_base is None or candidates_adapted is None:
        raise ValueError("candidates_base and candidates_adapted must be given together")
    batch, total = base.shape[0], candidates_base.shape[0]
    if not (total == candidates_adapted.shape[0] >= offset + batch and offset >= 0):
        raise ValueError(
            f"candidates ({total}, {candidates_adapted.shape[0]} rows) must hold the {batch} anchors at "
            f"rows {offset}.."
        )
    positions = torch.arange(batch, device=base.device) + offset
    self_mask = torch.arange(total, device=base.device)[None, :] == positions[:, None]
    return candidates_base, candidates_adapted, self_mask
