"""Data-parallel training over several processes (torchrun, `WORLD_SIZE > 1`) with DistributedDataParallel.

Each rank builds its share of the kNN table (all-gathered) and takes a disjoint share of each step's batch
as anchors. The in-batch candidates of the listwise and pair losses are gathered across ranks: every rank's
anchors (base vectors, and adapted ones with autograd through the gather, whose backward sums gradients
back to the owner rank), so each anchor sees the whole global batch as in single-process training. Each
rank's loss is scaled by its share of the anchors and DDP averages the gradients, which makes the update
exactly single-process training's on the global batch, and every rank holds the same weights;
early-stopping decisions use rank 0's held-out score. Rank 0 writes checkpoints and the adaptor. One GPU
per rank (`cuda:LOCAL_RANK`, NCCL), or CPU processes (gloo). The entry point is
`matryoshka_rag.training.torchrun`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from inspect import signature

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .devices import resolve_device
from .neighbours import NeighbourMethod, knn_table


@dataclass(frozen=True)
class Context:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def share(self, n: int) -> tuple[int, int]:
        """This rank's contiguous `(start, stop)` of `n` items (equal sizes but for the last)."""
        size = -(-n // self.world_size)
        return min(n, self.rank * size), min(n, (self.rank + 1) * size)

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """`module` in DDP when distributed (buffers such as the fixed rotation are not re-broadcast)."""
        if not self.active:
            return module
        ids = [device.index] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel
        if "forward_sync_buffers" in signature(ddp).parameters:  # it deprecates broadcast_buffers
            return ddp(module, device_ids=ids, forward_sync_buffers=False)
        return ddp(module, device_ids=ids, broadcast_buffers=False)

    def agree(self, value: float, device: torch.device) -> float:
        """Rank 0's `value` on every rank (one broadcast; used for early-stopping scores)."""
        if not self.active:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self._comm_device(device))
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def gather_rows(self, rows: np.ndarray, n: int, device: torch.device) -> np.ndarray:
        """Concatenate every rank's `share(n)` of a table `(share, k)` into `(n, k)` on every rank."""
        if not self.active:
            return rows
        comm = self._comm_device(device)
        size = -(-n // self.world_size)
        padded = torch.zeros((size, rows.shape[1]), dtype=torch.int64, device=comm)
        padded[: len(rows)] = torch.from_numpy(rows).to(comm)
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat(parts)[:n].cpu().numpy()

    def gather_batch(
        self, tensor: torch.Tensor, sizes: Sequence[int] | None = None, grad: bool = False
    ) -> tuple[torch.Tensor, int]:
        """Every rank's rows `(n_rank, ...)` of a batch concatenated in rank order, `(sum(n_rank), ...)` on
        every rank, and `offset`, where this rank's rows start in it (`[offset : offset + n_rank]`).

        `sizes`: every rank's `n_rank` when the caller knows them (no extra collective, no host read);
        otherwise they are all-gathered first. Shares of unequal sizes are padded to the largest for the
        collective and the padding is dropped. `grad=False` gathers without autograd (e.g. base vectors);
        `grad=True` goes through `torch.distributed.nn.functional.all_gather`, whose backward sums every
        rank's gradient for a row back to the rank that owns it. `(tensor, 0)` when not distributed.
        """
        if not self.active:
            return tensor, 0
        comm = self._comm_device(tensor.device)
        if sizes is None:
            size = torch.tensor([tensor.shape[0]], dtype=torch.int64, device=comm)
            counts = [torch.empty_like(size) for _ in range(self.world_size)]
            dist.all_gather(counts, size)
            sizes = [int(count.item()) for count in counts]
        sizes = [int(size) for size in sizes]
        if len(sizes) != self.world_size or sizes[self.rank] != tensor.shape[0]:
            raise ValueError(
                f"rank {self.rank} of {self.world_size} holds {tensor.shape[0]} rows, but sizes are {sizes}"
            )
        padding = tensor.new_zeros((max(sizes) - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor if grad else tensor.detach(), padding]).to(comm)
        if grad:
            from torch.distributed.nn.functional import all_gather

            # deprecated (a FutureWarning, silenced) but differentiable on gloo as on NCCL
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                parts = all_gather(padded)
        else:
            parts = [torch.empty_like(padded) for _ in range(self.world_size)]
            dist.all_gather(parts, padded)
        gathered = torch.cat([part[:size] for part, size in zip(parts, sizes)]).to(tensor.device)
        return gathered, sum(sizes[: self.rank])

    def same_on_all_ranks(self, text: str) -> bool:
        """Whether every rank holds the same `text` (e.g. a weights fingerprint)."""
        if not self.active:
            return True
        texts: list[str | None] = [None] * self.world_size
        dist.all_gather_object(texts, text)
        return len(set(texts)) == 1

    def _comm_device(self, device: torch.device) -> torch.device:
        return device if self.backend == "nccl" else torch.device("cpu")


LOCAL = Context()


def setup(device: str | None = None) -> tuple[Context, torch.device]:
    """This process's `Context` and device; joins the process group when launched with `WORLD_SIZE > 1`.

    Under torchrun, CUDA ranks use `cuda:LOCAL_RANK` with NCCL and CPU ranks use gloo; `device="cpu"`
    forces CPU. An already initialised group is reused.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    initialised = dist.is_available() and dist.is_initialized()
    if world_size <= 1 and not initialised:
        return LOCAL, resolve_device(device)
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        resolve_device(str(resolved))
        torch.cuda.set_device(resolved)
    if not initialised:
        dist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), dist.get_backend()), resolved


def knn_table_shared(
    embeddings: np.ndarray,
    k: int,
    method: NeighbourMethod,
    context: Context,
    device: torch.device,
    seed: int,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """`neighbours.knn_table` with each rank computing its share of the rows: `(n, k)` on every rank (rows
    in `exclude` are nobody's neighbours)."""
    n = embeddings.shape[0]
    rows = context.share(n) if context.active else None
    table, info = knn_table(embeddings, k, method, device=device, rows=rows, seed=seed, exclude=exclude)
    return context.gather_rows(table, n, device), info
