"""Which items a training step samples: epoch-wise shuffles that depend only on (seed, step), so a run is
deterministic and resumes at any step."""

from __future__ import annotations

import functools

import torch


def batch_positions(n_items: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Positions `(min(batch_size, n_items),)` in `range(n_items)` of batch number `step`.

    The shuffle is drawn once per epoch (cached), so a step costs O(batch), not O(n_items).
    """
    batch_size = min(batch_size, n_items)
    per_epoch = n_items // batch_size
    epoch, position = divmod(step, per_epoch)
    return epoch_order(n_items, seed, epoch)[position * batch_size : (position + 1) * batch_size]


@functools.lru_cache(maxsize=4)
def epoch_order(n_items: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffle `(n_items,)` of `epoch`."""
    return torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
