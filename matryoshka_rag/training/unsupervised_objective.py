"""The corpus-only objective: its loss on a block of anchors and their neighbours, and its sampling of a
corpus kept on the host (training batches, held-out items and the label-free early-stopping score)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np
import torch

from ..adaptor.torch_module import MatryoshkaAdaptor
from ..losses import (
    listwise_distillation_loss,
    pairwise_similarity_loss,
    reconstruction_loss,
    topk_similarity_loss,
)
from .config import UnsupervisedConfig
from .distributed import LOCAL, Context, knn_table_shared
from .neighbours import NeighbourMethod
from .schedule import batch_positions
from .streaming import HostCorpus

Model = Callable[
    [torch.Tensor], torch.Tensor
]  # the adaptor, or its DDP / compiled wrapper: (n, dim) -> (n, out)


def unsupervised_loss(
    model: Model,
    adaptor: MatryoshkaAdaptor,
    block: torch.Tensor,
    size: int,
    dims: tuple[int, ...],
    config: UnsupervisedConfig,
    context: Context = LOCAL,
    shares: Sequence[int] | None = None,
    expand: torch.Tensor | None = None,
) -> torch.Tensor:
    """The objective on `block (size * (1 + k), dim)`: `size` anchors, then each anchor's k neighbours; with
    `expand (size * (1 + k),)`, `block` holds each of those corpus rows once and `block[expand]` is that.

    `model` is the adaptor, or its DDP / compiled wrapper (one forward per step, of each row once). Under an active `context`
    the anchors are this rank's share of a global batch (`shares`: every rank's number of anchors, else
    all-gathered): every rank's anchors are gathered (`Context.gather_batch`) and are the in-batch
    candidates of the listwise and pair terms, and the loss, a mean over this rank's anchors, is scaled by
    `size * world_size / global batch`. Every term is then `(W / batch) * sum` over this rank's anchors, so
    DDP's average of the W ranks' gradients is the gradient of the single-process loss on the global batch,
    whether or not the batch divides by W."""
    adapted_all = model(block)
    if expand is not None:
        # index_select: its backward adds each repeated row's gradients in a fixed order (indexing's
        # accumulates them with atomic adds across threads, in no fixed order)
        block, adapted_all = block.index_select(0, expand), adapted_all.index_select(0, expand)
    base, base_neighbours = block[:size], block[size:].reshape(size, -1, block.shape[1])
    adapted, adapted_neighbours = (
        adapted_all[:size],
        adapted_all[size:].reshape(size, base_neighbours.shape[1], -1),
    )
    candidates_base = candidates_adapted = None
    offset, scale = 0, 1.0
    if context.active:
        candidates_base, offset = context.gather_batch(base, shares)
        candidates_adapted, _ = context.gather_batch(adapted, shares, grad=True)
        scale = size * context.world_size / candidates_base.shape[0]
    rec = config.beta * reconstruction_loss(adaptor.rotate(base), adapted)
    if config.objective == "listwise":
        loss = rec + listwise_distillation_loss(
            base,
            base_neighbours,
            adapted,
            adapted_neighbours,
            dims,
            config.temperature,
            candidates_base=candidates_base,
            candidates_adapted=candidates_adapted,
            offset=offset,
        )
    else:
        topk = topk_similarity_loss(base, base_neighbours, adapted, adapted_neighbours, dims)
        pairs = pairwise_similarity_loss(
            base,
            adapted,
            dims,
            candidates_base=candidates_base,
            candidates_adapted=candidates_adapted,
            offset=offset,
        )
        loss = topk + config.alpha * pairs + rec
    return loss * scale if context.active else loss


def _rows_of(adapted_corpus: torch.Tensor, rows: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
    """The rows `rows (len(block),)` of `adapted_corpus (n, out_dim)`: `f(block)` read, not computed (a
    `Model` for a block whose corpus rows were all adapted already)."""
    return adapted_corpus.index_select(0, rows.to(adapted_corpus.device))


def holdout_split(n: int, config: UnsupervisedConfig) -> tuple[np.ndarray, np.ndarray]:
    """Corpus rows `(held out, trained on)` drawn from `config.seed`: `config.holdout` items, at most a tenth
    of the corpus and leaving each trained item `config.k` trained neighbours."""
    holdout = min(config.holdout, n // 10, max(n - config.k - 1, 0))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed)).numpy()
    return order[:holdout], order[holdout:]


class UnsupervisedObjective:
    """Sampling and loss of unsupervised training on a corpus kept on the host.

    The held-out items (`holdout_split`) are never trained on: no training anchor has one as a neighbour
    (the table must say so: `neighbour_table` builds it so), so no step reads one. The objective on them is
    the label-free early-stopping score (the paper's Fig. 7 idea: held-out loss tracks retrieval quality).
    A step reads and adapts the distinct rows among `batch * (1 + k)` corpus rows (its anchors and their
    neighbours from the table `(n, k)`), whatever n.
    Under data parallelism each rank takes a disjoint share `rows[rank::world_size]` of every batch as
    anchors, and every rank's anchors are the in-batch candidates (see `unsupervised_loss`).
    """

    def __init__(
        self,
        corpus: HostCorpus,
        neighbours: np.ndarray,
        dims: tuple[int, ...],
        config: UnsupervisedConfig,
        context: Context = LOCAL,
        compile: bool = False,
    ) -> None:
        self.corpus, self.neighbours, self.dims, self.config, self.context = (
            corpus,
            neighbours,
            dims,
            config,
            context,
        )
        self.holdout_rows, self.train_rows = holdout_split(len(corpus), config)
        if np.isin(neighbours[self.train_rows], self.holdout_rows).any():
            raise ValueError(
                "the neighbour table gives trained items held-out neighbours: use neighbour_table"
            )
        # DDP modules go through torch.compile themselves; otherwise the whole loss is compiled (it fuses
        # the per-dim softmax and cosine kernels, which dominate small steps on a GPU)
        self._loss = torch.compile(unsupervised_loss) if compile and not context.active else unsupervised_loss
        self._prefetched: dict[tuple[int, int], Future] = {}

    def block_rows(self, rows: np.ndarray) -> np.ndarray:
        """Corpus rows of a block: the anchors `rows (size,)`, then their neighbours, `(size * (1 + k),)`."""
        return np.concatenate([rows, self.neighbours[rows].reshape(-1)])

    def distinct_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The block of anchors `rows` as its distinct corpus rows `(u,)`, sorted, and the position among them
        of each row of `block_rows(rows)` `(size * (1 + k),)`: each row is read and adapted once."""
        distinct, expand = np.unique(self.block_rows(rows), return_inverse=True)
        return distinct, expand.reshape(-1)

    def loss(self, adaptor: MatryoshkaAdaptor, rows: np.ndarray, model: Model | None = None) -> torch.Tensor:
        """The objective on anchors `rows (batch,)`, their k neighbours and each other."""
        distinct, expand = self.distinct_rows(rows)
        block = self.corpus.gather(distinct)
        expand_on = torch.from_numpy(expand).to(block.device)
        return self._loss(
            model or adaptor, adaptor, block, len(rows), self.dims, self.config, expand=expand_on
        )

    def train_rows_at(self, step: int, seed_offset: int = 0) -> np.ndarray:
        """This rank's anchors `(share,)` of training batch number `step` (`seed_offset` reseeds the order)."""
        batch = batch_positions(
            len(self.train_rows), self.config.batch_size, self.config.seed + seed_offset, step
        )
        return self.train_rows[batch.numpy()][self.context.rank :: self.context.world_size]

    def _shares(self) -> tuple[int, ...]:
        """Every rank's number of anchors `len(rows[rank::world_size])` in a training batch."""
        n, world_size = min(self.config.batch_size, len(self.train_rows)), self.context.world_size
        return tuple(len(range(rank, n, world_size)) for rank in range(world_size))

    def loss_at(
        self,
        adaptor: MatryoshkaAdaptor,
        step: int,
        seed_offset: int = 0,
        model: Model | None = None,
        adapted_corpus: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The objective on training batch number `step` (this rank's share); the next batch's rows are
        gathered in the background meanwhile when the corpus prefetches. With `adapted_corpus` (`f` of every
        corpus row `(n, out_dim)`, already computed this step) the block's adapted rows are read from it
        instead of adapting them again (the same values)."""
        rows = self.train_rows_at(step, seed_offset)
        distinct, expand = self.distinct_rows(rows)
        pending = self._prefetched.pop((step, seed_offset), None)
        host = pending.result() if pending is not None else self.corpus.host_rows(distinct)
        upcoming = self.corpus.submit(self.distinct_rows(self.train_rows_at(step + 1, seed_offset))[0])
        if upcoming is not None:
            self._prefetched[(step + 1, seed_offset)] = upcoming
        block = self.corpus.to_device(host)
        expand_on = torch.from_numpy(expand).to(block.device)
        forward = model or adaptor
        if adapted_corpus is not None:
            forward = functools.partial(_rows_of, adapted_corpus, torch.from_numpy(distinct))
        if self.context.active:  # every rank's anchors are the in-batch candidates
            return self._loss(
                forward,
                adaptor,
                block,
                len(rows),
                self.dims,
                self.config,
                self.context,
                self._shares(),
                expand_on,
            )
        return self._loss(forward, adaptor, block, len(rows), self.dims, self.config, expand=expand_on)

    def proxy(self, adaptor: MatryoshkaAdaptor) -> float:
        """Minus the objective on the held-out items, in batches (higher is better); one sync."""
        rows = self.holdout_rows
        if len(rows) == 0:
            return 0.0
        size = self.config.batch_size
        losses = [self.loss(adaptor, rows[i : i + size]).float() for i in range(0, len(rows), size)]
        return -float(np.mean(torch.stack(losses).cpu().numpy().astype(np.float64)))


def neighbour_table(
    corpus: np.ndarray,
    config: UnsupervisedConfig,
    device: torch.device,
    context: Context = LOCAL,
    method: NeighbourMethod = "auto",
) -> tuple[np.ndarray, dict]:
    """Each corpus row's `config.k` nearest other rows `(n, k)`, never a held-out one (`holdout_split`), and
    the table's info (method, seconds, recall); built once per run and shared by both stages."""
    held_out = holdout_split(len(corpus), config)[0]
    return knn_table_shared(corpus, config.k, method, context, device, config.seed, held_out)


def unsupervised_objective(
    corpus: np.ndarray,
    dims: tuple[int, ...],
    config: UnsupervisedConfig,
    device: torch.device,
    table: np.ndarray,
    context: Context = LOCAL,
    compile: bool = False,
) -> UnsupervisedObjective:
    """The objective on a host corpus `(n, dim)` with its neighbour table `(n, k)` (`neighbour_table`)."""
    return UnsupervisedObjective(HostCorpus(corpus, device), table, dims, config, context, compile)
