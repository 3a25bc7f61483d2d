"""Training loops for the adaptor: unsupervised (corpus only) and supervised (query/document relevance).

Both run on CUDA when present (bf16 autocast) and on CPU otherwise, are deterministic for a fixed seed
(each step's sample is a function of (seed, step)), stop early on a validation score, and can resume from
a checkpoint folder. Unsupervised training scales linearly in the corpus size: the corpus stays on the host
(an array or a memory-mapped `.npy`), each step sends only its anchors and their neighbours to the device,
the kNN table is built once, and torchrun launches run data-parallel (see `distributed`).
"""

from __future__ import annotations

import copy
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .adaptor import AdaptorConfig, MatryoshkaAdaptor
from .distributed import LOCAL, Context, knn_table_shared, resolve_device, setup
from .errors import AdaptorMismatchError, InputError
from .losses import (
    graded_softmax_loss,
    listwise_distillation_loss,
    multi_positive_softmax_loss,
    pairwise_rank_loss,
    pairwise_similarity_loss,
    prefix_self_distillation_loss,
    reconstruction_loss,
    topk_similarity_loss,
)
from .metrics import ndcg_at_k
from .neighbours import check_corpus_size, exact_search
from .pca import pca_rotation
from .run_identity import array_fingerprint, check_resume, relevance_fingerprint, run_identity
from .streaming import HostCorpus
from .training_options import (
    Start,
    SupervisedObjective,
    UnsupervisedObjective,
    check_bool,
    check_choice,
    check_int,
    check_number,
)
from .validation import check_dims, check_rows, check_vectors, default_dims, open_corpus

Relevance = Sequence[Mapping[int, float]]  # per query: corpus row -> grade


@dataclass(frozen=True)
class UnsupervisedConfig:
    """Settings of unsupervised training (paper defaults noted where ours differ).

    `objective="paper"` is `L_topk + alpha*L_pair + beta*L_rec` exactly; `"listwise"` (default, it wins on
    SciFact and NFCorpus, see BENCHMARKS.md) replaces the L1 terms by a KL between softmaxes of full-dim
    and prefix cosines over batch items and k nearest neighbours. `start="pca"` starts `f` from the
    corpus's PCA rotation (the paper starts from the identity).
    """

    objective: UnsupervisedObjective = "listwise"
    start: Start = "pca"
    k: int = 10
    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 0.05
    batch_size: int = 512  # paper: 128
    lr: float = 3e-4  # paper: 1e-3 (with the listwise objective it erodes the larger prefixes)
    max_steps: int = 400  # paper: 5000; the held-out loss keeps falling while larger prefixes erode
    eval_every: int = 50
    patience: int = 4
    holdout: int = 500
    hidden_dim: int = 0  # 0: the base dim
    num_layers: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        """Raise `InputError` naming the first field outside its allowed values."""
        check_choice("objective", self.objective, UnsupervisedObjective)
        check_choice("start", self.start, Start)
        for name, minimum in (("k", 1), ("batch_size", 1), ("max_steps", 1), ("eval_every", 1)):
            check_int(name, getattr(self, name), minimum)
        for name, minimum in (("patience", 1), ("holdout", 0), ("hidden_dim", 0), ("num_layers", 1)):
            check_int(name, getattr(self, name), minimum)
        check_int("seed", self.seed, 0)
        check_number("alpha", self.alpha, 0, open_low=False)
        check_number("beta", self.beta, 0, open_low=False)
        check_number("temperature", self.temperature, 0)
        check_number("lr", self.lr, 0)


@dataclass(frozen=True)
class SupervisedConfig:
    """Settings of the supervised stage, which starts from an unsupervised adaptor.

    `objective="pairwise"` is the paper's `L_rank` over each query's positives, hard negatives (the base
    model's top results that are not relevant) and random corpus negatives. The softmax objectives rank
    the whole corpus (or positives + negatives when it exceeds `max_candidates`): `"multi-positive"`
    (default) gives each relevant document its own softmax against the non-relevant candidates,
    `"softmax"` is one graded cross-entropy whose target mass the relevant documents share. With them,
    `self_distillation` x the prefix self-distillation loss (the full adapted vector teaches its
    prefixes its ranking) is added; the pairwise objective stays the paper's. Every objective is added to
    `regularization` x the unsupervised objective on a corpus batch.
    Several softmax `temperature`s are each trained (early-stopped on validation) and the best validation
    score wins (the graded softmax wants 0.1 on NFCorpus's dozens of graded positives and 0.05 on SciFact's
    one; the multi-positive softmax 0.05-0.07 on both, see BENCHMARKS.md).
    The stage starts from the stage-one adaptor, widened to `hidden_dim` hidden units when that is wider
    (the same `f`: new units start with zero outgoing weights; see BENCHMARKS.md for what it changed).
    """

    objective: SupervisedObjective = "multi-positive"
    self_distillation: float = 1.0
    regularization: float = 1.0
    temperature: float | tuple[float, ...] = (0.05, 0.07)  # several: validation picks one
    batch_size: int = 256
    lr: float = 1e-3
    hidden_dim: int = 0  # > stage one's width: the MLP is widened to this many hidden units first (same f)
    max_steps: int = 1500
    eval_every: int = 50
    patience: int = 5
    hard_negatives: int = 30
    random_negatives: int = 30
    max_positives: int = 32
    max_candidates: int = 16384
    validation_fraction: float = 0.15
    refit: bool = True  # after validation chose the step count, train again on training + validation queries
    seed: int = 0

    def __post_init__(self) -> None:
        """Raise `InputError` naming the first field outside its allowed values; a list of temperatures
        becomes a tuple."""
        check_choice("objective", self.objective, SupervisedObjective)
        check_number("self_distillation", self.self_distillation, 0, open_low=False)
        check_number("regularization", self.regularization, 0, open_low=False)
        temperatures = self.temperature
        if isinstance(temperatures, list | tuple):
            if not temperatures:
                raise InputError("temperature must be one number > 0 or several; got none")
            object.__setattr__(self, "temperature", tuple(temperatures))
        for temperature in temperatures if isinstance(temperatures, list | tuple) else (temperatures,):
            check_number("temperature", temperature, 0)
        check_number("lr", self.lr, 0)
        for name, minimum in (("batch_size", 1), ("hidden_dim", 0), ("max_steps", 1), ("eval_every", 1)):
            check_int(name, getattr(self, name), minimum)
        for name, minimum in (("patience", 1), ("hard_negatives", 0), ("random_negatives", 0)):
            check_int(name, getattr(self, name), minimum)
        check_int("max_positives", self.max_positives, 1)
        check_int("max_candidates", self.max_candidates, 1)
        check_int("seed", self.seed, 0)
        check_number("validation_fraction", self.validation_fraction, 0, 1)
        check_bool("refit", self.refit)


def _batch(n_items: int, batch_size: int, seed: int, step: int) -> torch.Tensor:
    """Row positions `(batch,)` for `step`: epoch-wise shuffles that depend only on (seed, step).

    The shuffle is drawn once per epoch (cached), so a step costs O(batch), not O(n_items).
    """
    batch_size = min(batch_size, n_items)
    per_epoch = n_items // batch_size
    epoch, position = divmod(step, per_epoch)
    return _epoch_order(n_items, seed, epoch)[position * batch_size : (position + 1) * batch_size]


@functools.lru_cache(maxsize=4)
def _epoch_order(n_items: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def _adapt_all(adaptor: MatryoshkaAdaptor, embeddings: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    return torch.cat([adaptor(embeddings[i : i + batch_size]) for i in range(0, len(embeddings), batch_size)])


def _optimise(
    adaptor: MatryoshkaAdaptor,
    loss_at: Callable[[int], torch.Tensor],
    score: Callable[[], float] | None,
    config: UnsupervisedConfig | SupervisedConfig,
    checkpoint_dir: Path | None,
    identity: dict,
    progress: bool,
    description: str,
    main_process: bool = True,
) -> dict:
    """Adam (`config.lr`) on the adaptor's MLP; evaluates `score` (higher is better) every `config.eval_every`
    steps, keeps the best weights, stops after `config.patience` evaluations without gain or at
    `config.max_steps`; `score=None` runs all `config.max_steps` and keeps the last weights. Returns the
    history. Only the `main_process` writes checkpoints; each records `identity` (`run_identity`), and one
    recording another is refused with `InputError`.

    No host-device synchronisation between evaluations: the running loss stays on the device."""
    lr, max_steps, eval_every, patience = config.lr, config.max_steps, config.eval_every, config.patience
    # fused on CUDA: one kernel, step counters on the device
    optimizer = torch.optim.Adam(adaptor.mlp.parameters(), lr=lr, fused=adaptor.device.type == "cuda" or None)
    autocast = adaptor.device.type == "cuda"
    checkpoint = checkpoint_dir / "checkpoint.pt" if checkpoint_dir else None
    if checkpoint is not None and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=adaptor.device, weights_only=True)
        check_resume(checkpoint, saved.get("identity"), identity)
        adaptor.load_state_dict(saved["adaptor"])
        optimizer.load_state_dict(saved["optimizer"])
        state = {key: saved[key] for key in ("step", "best_score", "best_state", "stale", "history")}
    else:
        with torch.no_grad():
            initial = score() if score is not None else None
        state = {
            "step": 0,
            "best_score": initial,
            "best_state": copy.deepcopy(adaptor.state_dict()),
            "stale": 0,
            "history": [{"step": 0, "loss": None, "score": initial}],
        }
    bar = tqdm(total=max_steps, initial=state["step"], desc=description, disable=not progress, leave=False)
    running = torch.zeros((), device=adaptor.device)
    since_eval = 0
    while state["step"] < max_steps and state["stale"] < patience:
        adaptor.train()
        with torch.autocast(adaptor.device.type, dtype=torch.bfloat16, enabled=autocast):
            loss = loss_at(state["step"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.detach().float()
        since_eval += 1
        state["step"] += 1
        bar.update(1)
        if state["step"] % eval_every == 0 or state["step"] == max_steps:
            adaptor.eval()
            with torch.no_grad():
                current = score() if score is not None else None
            mean_loss = (running / since_eval).item()
            running.zero_()
            since_eval = 0
            state["history"].append({"step": state["step"], "loss": mean_loss, "score": current})
            postfix = {"loss": f"{mean_loss:.4f}"}
            if current is not None:
                postfix["score"] = f"{current:.4f}"
                if current > state["best_score"] + 1e-5:
                    state.update(best_score=current, best_state=copy.deepcopy(adaptor.state_dict()), stale=0)
                else:
                    state["stale"] += 1
            bar.set_postfix(**postfix)
            if checkpoint is not None and main_process:
                checkpoint_dir.mkdir(parents=True, exist_ok=True)
                torch.save(
                    {
                        **state,
                        "identity": identity,
                        "adaptor": adaptor.state_dict(),
                        "optimizer": optimizer.state_dict(),
                    },
                    checkpoint.with_suffix(".tmp"),
                )
                os.replace(checkpoint.with_suffix(".tmp"), checkpoint)
    bar.close()
    if score is not None:
        adaptor.load_state_dict(state["best_state"])
    adaptor.eval()
    best_step = max(
        (h for h in state["history"] if h["score"] == state["best_score"]), key=lambda h: h["step"]
    )
    return {
        "steps": state["step"],
        "best_step": best_step["step"],
        "best_score": state["best_score"],
        "history": state["history"],
    }


def _unsupervised_loss(
    model: Callable[[torch.Tensor], torch.Tensor],
    adaptor: MatryoshkaAdaptor,
    block: torch.Tensor,
    size: int,
    dims: tuple[int, ...],
    config: UnsupervisedConfig,
    context: Context = LOCAL,
    shares: Sequence[int] | None = None,
) -> torch.Tensor:
    """The objective on `block (size * (1 + k), dim)`: `size` anchors, then each anchor's k neighbours.

    `model` is the adaptor, or its DDP / compiled wrapper (one forward per step). Under an active `context`
    the anchors are this rank's share of a global batch (`shares`: every rank's number of anchors, else
    all-gathered): every rank's anchors are gathered (`Context.gather_batch`) and are the in-batch
    candidates of the listwise and pair terms, and the loss, a mean over this rank's anchors, is scaled by
    `size * world_size / global batch`. Every term is then `(W / batch) * sum` over this rank's anchors, so
    DDP's average of the W ranks' gradients is the gradient of the single-process loss on the global batch,
    whether or not the batch divides by W."""
    base, base_neighbours = block[:size], block[size:].reshape(size, -1, block.shape[1])
    adapted_all = model(block)
    adapted, adapted_neighbours = (
        adapted_all[:size],
        adapted_all[size:].reshape(size, base_neighbours.shape[1], -1),
    )
    candidates, scale = {}, 1.0
    if context.active:
        candidates_base, offset = context.gather_batch(base, shares)
        candidates_adapted, _ = context.gather_batch(adapted, shares, grad=True)
        candidates = {
            "candidates_base": candidates_base,
            "candidates_adapted": candidates_adapted,
            "offset": offset,
        }
        scale = size * context.world_size / candidates_base.shape[0]
    rec = config.beta * reconstruction_loss(adaptor.rotate(base), adapted)
    if config.objective == "listwise":
        loss = rec + listwise_distillation_loss(
            base, base_neighbours, adapted, adapted_neighbours, dims, config.temperature, **candidates
        )
    else:
        topk = topk_similarity_loss(base, base_neighbours, adapted, adapted_neighbours, dims)
        loss = topk + config.alpha * pairwise_similarity_loss(base, adapted, dims, **candidates) + rec
    return loss * scale if context.active else loss


class _UnsupervisedObjective:
    """Sampling and loss of unsupervised training on a corpus kept on the host.

    `config.holdout` corpus items are never trained on; the objective on them is the label-free
    early-stopping score (the paper's Fig. 7 idea: held-out loss tracks retrieval quality). A step reads
    `batch * (1 + k)` corpus rows (its anchors and their neighbours from the table `(n, k)`), whatever n.
    Under data parallelism each rank takes a disjoint share `rows[rank::world_size]` of every batch as
    anchors, and every rank's anchors are the in-batch candidates (see `_unsupervised_loss`).
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
        holdout = min(config.holdout, len(corpus) // 10)
        order = torch.randperm(len(corpus), generator=torch.Generator().manual_seed(config.seed)).numpy()
        self.holdout_rows, self.train_rows = order[:holdout], order[holdout:]
        # DDP modules go through torch.compile themselves; otherwise the whole loss is compiled (it fuses
        # the per-dim softmax and cosine kernels, which dominate small steps on a GPU)
        self._loss = (
            torch.compile(_unsupervised_loss) if compile and not context.active else _unsupervised_loss
        )
        self._prefetched: dict[tuple[int, int], Future] = {}

    def _indices(self, rows: np.ndarray) -> np.ndarray:
        """Corpus rows of a block: the anchors `rows (size,)`, then their neighbours, `(size * (1 + k),)`."""
        return np.concatenate([rows, self.neighbours[rows].reshape(-1)])

    def loss(
        self, adaptor: MatryoshkaAdaptor, rows: np.ndarray, model: nn.Module | None = None
    ) -> torch.Tensor:
        """The objective on anchors `rows (batch,)`, their k neighbours and each other."""
        block = self.corpus.gather(self._indices(rows))
        return self._loss(model or adaptor, adaptor, block, len(rows), self.dims, self.config)

    def _train_rows(self, step: int, seed_offset: int) -> np.ndarray:
        batch = _batch(len(self.train_rows), self.config.batch_size, self.config.seed + seed_offset, step)
        return self.train_rows[batch.numpy()][self.context.rank :: self.context.world_size]

    def _shares(self) -> tuple[int, ...]:
        """Every rank's number of anchors `len(rows[rank::world_size])` in a training batch."""
        n, world_size = min(self.config.batch_size, len(self.train_rows)), self.context.world_size
        return tuple(len(range(rank, n, world_size)) for rank in range(world_size))

    def loss_at(
        self, adaptor: MatryoshkaAdaptor, step: int, seed_offset: int = 0, model: nn.Module | None = None
    ) -> torch.Tensor:
        """The objective on training batch number `step` (this rank's share); the next batch's rows are
        gathered in the background meanwhile when the corpus prefetches."""
        rows = self._train_rows(step, seed_offset)
        pending = self._prefetched.pop((step, seed_offset), None)
        host = pending.result() if pending is not None else self.corpus.host_rows(self._indices(rows))
        upcoming = self.corpus.submit(self._indices(self._train_rows(step + 1, seed_offset)))
        if upcoming is not None:
            self._prefetched[(step + 1, seed_offset)] = upcoming
        block = self.corpus.to_device(host)
        # in a data-parallel run, every rank's anchors are the in-batch candidates
        spread = {"context": self.context, "shares": self._shares()} if self.context.active else {}
        return self._loss(model or adaptor, adaptor, block, len(rows), self.dims, self.config, **spread)

    def proxy(self, adaptor: MatryoshkaAdaptor) -> float:
        """Minus the objective on the held-out items, in batches (higher is better); one sync."""
        rows = self.holdout_rows
        if len(rows) == 0:
            return 0.0
        size = self.config.batch_size
        losses = [self.loss(adaptor, rows[i : i + size]).float() for i in range(0, len(rows), size)]
        return -float(np.mean(torch.stack(losses).cpu().numpy().astype(np.float64)))


def _unsupervised_objective(
    corpus: np.ndarray,
    dims: tuple[int, ...],
    config: UnsupervisedConfig,
    device: torch.device,
    context: Context = LOCAL,
    neighbours: str = "auto",
    compile: bool = False,
) -> tuple[_UnsupervisedObjective, dict]:
    """The objective on a host corpus `(n, dim)` and the neighbour table's info (method, seconds, recall)."""
    table, info = knn_table_shared(corpus, config.k, neighbours, context, device, config.seed)
    host = HostCorpus(corpus, device)
    return _UnsupervisedObjective(host, table, dims, config, context, compile), info


def _new_adaptor(
    corpus: np.ndarray, dims: tuple[int, ...], config: UnsupervisedConfig, base_model: str
) -> MatryoshkaAdaptor:
    adaptor_config = AdaptorConfig(
        base_dim=corpus.shape[1],
        dims=dims,
        base_model=base_model,
        hidden_dim=config.hidden_dim,
        num_layers=config.num_layers,
        rotation=config.start == "pca",
    )
    torch.manual_seed(config.seed)
    return MatryoshkaAdaptor(adaptor_config, pca_rotation(corpus) if config.start == "pca" else None)


def train_unsupervised(
    corpus: np.ndarray | str | Path,
    dims: Sequence[int] | None = None,
    config: UnsupervisedConfig = UnsupervisedConfig(),
    base_model: str = "unknown",
    device: str | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    *,
    neighbours: Literal["auto", "exact", "faiss"] = "auto",
    compile: bool = False,
) -> MatryoshkaAdaptor:
    """Train an adaptor on corpus embeddings alone.

    Args:
        corpus: base embeddings `(n, dim)`: an array, an `np.memmap` (float32/float16) or a `.npy` path
            (opened memory-mapped). It stays on the host; it is checked for NaN/inf/zero rows in chunks.
        dims: Matryoshka dims (default: powers of two from 16, plus the base dim).
        config: objective and optimisation settings.
        base_model: name of the model that made `corpus`, recorded in the adaptor.
        device: "cuda", "cuda:1", "cpu", ... (default: CUDA when present; under torchrun `cuda:LOCAL_RANK`).
        checkpoint_dir: where to checkpoint at each evaluation and resume from.
        neighbours: how the kNN table is built (`neighbours.knn_table`): "auto" is exact on CUDA or up to
            `neighbours.EXACT_MAX_ROWS` rows, faiss IVF above.
        compile: `torch.compile` the step's loss (worth it on CUDA for long runs).

    Returns the adaptor at its best proxy score, on `device`, with `metadata` holding the training settings,
    seconds, steps, the proxy history and `training.neighbours = {method, seconds, recall_sample}`. Under
    torchrun (`WORLD_SIZE > 1`) every rank returns the same adaptor (see `distributed`).
    """
    what = "corpus embeddings"
    corpus = open_corpus(corpus, what)
    dims = check_dims(dims or default_dims(corpus.shape[1]), corpus.shape[1])
    check_corpus_size(len(corpus), config.k)
    resolve_device(device)  # a missing device fails before the process group or any work
    check_rows(corpus, what)
    context, resolved = setup(device)
    started = time.perf_counter()
    adaptor = _new_adaptor(corpus, dims, config, base_model).to(resolved)
    objective, neighbour_info = _unsupervised_objective(
        corpus, dims, config, resolved, context, neighbours, compile
    )
    model = context.wrap(adaptor, resolved)
    if compile and context.active:
        model = torch.compile(model)
    loop_started = time.perf_counter()
    try:
        outcome = _optimise(
            adaptor,
            lambda step: objective.loss_at(adaptor, step, model=model),
            lambda: context.agree(objective.proxy(adaptor), resolved),
            config,
            Path(checkpoint_dir) if checkpoint_dir else None,
            run_identity(
                config,
                stage="unsupervised",
                corpus=array_fingerprint(corpus),
                dims=dims,
                base_model=base_model,
                neighbours=neighbours,
            ),
            progress and context.is_main,
            "unsupervised",
            main_process=context.is_main,
        )
    finally:
        objective.corpus.close()
    training = {
        "mode": "unsupervised",
        "unsupervised": asdict(config),
        "device": str(resolved),
        "seconds": time.perf_counter() - started,
        "loop_seconds": time.perf_counter() - loop_started,
        "corpus_size": len(corpus),
        "neighbours": neighbour_info,
    }
    if context.active:
        training["distributed"] = {
            "world_size": context.world_size,
            "backend": context.backend,
            "identical_weights": context.same_on_all_ranks(adaptor.fingerprint()),
        }
    adaptor.metadata = {
        "training": training,
        "metrics": {"holdout_loss": -outcome.pop("best_score"), **outcome},
    }
    return adaptor


class _SupervisedObjective:
    """Sampling and ranking loss of the supervised stage."""

    def __init__(
        self,
        corpus: torch.Tensor,
        queries: torch.Tensor,
        relevance: Relevance,
        config: SupervisedConfig,
        dims: tuple[int, ...],
    ) -> None:
        self.corpus, self.queries, self.relevance, self.config, self.dims = (
            corpus,
            queries,
            relevance,
            config,
            dims,
        )
        depth = min(config.hard_negatives + max(len(r) for r in relevance), len(corpus))
        top = exact_search(queries, corpus, depth)[1].tolist()
        self.hard = [
            [d for d in row if d not in rel][: config.hard_negatives] for row, rel in zip(top, relevance)
        ]

    def _generator(self, step: int) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed * 7_919 + step)

    def loss(self, adaptor: MatryoshkaAdaptor, step: int) -> torch.Tensor:
        config = self.config
        batch = _batch(len(self.queries), config.batch_size, config.seed, step).tolist()
        adapted_queries = adaptor(self.queries[batch])
        if config.objective != "pairwise":
            return self._softmax(adaptor, adapted_queries, batch, self._generator(step))
        return self._pairwise(adaptor, adapted_queries, batch, self._generator(step))

    def _softmax(self, adaptor, adapted_queries, batch, generator) -> torch.Tensor:
        config, n = self.config, len(self.corpus)
        if n <= config.max_candidates:
            candidates = torch.arange(n)
        else:
            chosen = {d for q in batch for d in (*self.relevance[q], *self.hard[q])}
            extra = torch.randperm(n, generator=generator)[: max(config.max_candidates - len(chosen), 0)]
            candidates = torch.tensor(sorted(chosen.union(extra.tolist())))
        position = {int(d): i for i, d in enumerate(candidates.tolist())}
        grades = torch.zeros((len(batch), len(candidates)), device=self.corpus.device)
        for row, q in enumerate(batch):
            for doc, grade in self.relevance[q].items():
                grades[row, position[doc]] = float(grade)
        documents = _adapt_all(adaptor, self.corpus[candidates.to(self.corpus.device)])
        rank = multi_positive_softmax_loss if config.objective == "multi-positive" else graded_softmax_loss
        loss = rank(adapted_queries, documents, grades, self.dims, config.temperature)
        if config.self_distillation:
            distilled = prefix_self_distillation_loss(
                adapted_queries, documents, self.dims, config.temperature
            )
            loss = loss + config.self_distillation * distilled
        return loss

    def _pairwise(self, adaptor, adapted_queries, batch, generator) -> torch.Tensor:
        config, n = self.config, len(self.corpus)
        lists, grade_lists = [], []
        for q in batch:
            positives = list(self.relevance[q])
            if len(positives) > config.max_positives:
                keep = torch.randperm(len(positives), generator=generator)[: config.max_positives].tolist()
                positives = [positives[i] for i in keep]
            randoms = torch.randint(n, (config.random_negatives,), generator=generator).tolist()
            negatives = [d for d in (*self.hard[q], *randoms) if d not in self.relevance[q]]
            lists.append(positives + negatives)
            grade_lists.append([float(self.relevance[q][d]) for d in positives] + [0.0] * len(negatives))
        width = max(len(docs) for docs in lists)
        device = self.corpus.device
        index = torch.zeros((len(batch), width), dtype=torch.int64)
        grades = torch.zeros((len(batch), width))
        mask = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, (docs, doc_grades) in enumerate(zip(lists, grade_lists)):
            index[row, : len(docs)] = torch.tensor(docs)
            grades[row, : len(docs)] = torch.tensor(doc_grades)
            mask[row, : len(docs)] = True
        documents = adaptor(self.corpus[index.to(device).reshape(-1)]).reshape(len(batch), width, -1)
        return pairwise_rank_loss(adapted_queries, documents, grades.to(device), mask.to(device), self.dims)


def validation_ndcg(
    adaptor: MatryoshkaAdaptor,
    corpus: torch.Tensor,
    queries: torch.Tensor,
    relevance: Relevance,
    dims: Sequence[int],
    k: int = 10,
) -> float:
    """Mean nDCG@k over `dims` of exact search with adapted prefixes: the supervised early-stopping score."""
    adapted_corpus = _adapt_all(adaptor, corpus).float()
    adapted_queries = _adapt_all(adaptor, queries).float()
    scores = []
    for m in dims:
        found = exact_search(adapted_queries[:, :m], adapted_corpus[:, :m], k)[1].tolist()
        scores.append(np.mean([ndcg_at_k(row, rel, k) for row, rel in zip(found, relevance)]))
    return float(np.mean(scores))


def split_validation(n_queries: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Deterministic split of query positions into (train, validation)."""
    order = torch.randperm(n_queries, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, int(round(n_queries * fraction))) if n_queries > 1 else 0
    return sorted(order[n_val:]), sorted(order[:n_val])


def _check_relevance(
    queries: np.ndarray, relevance: Relevance, n_docs: int, what: str
) -> list[dict[int, float]]:
    if len(queries) != len(relevance):
        raise InputError(f"{what}: {len(queries)} query vectors but {len(relevance)} relevance lists")
    cleaned = []
    for i, rel in enumerate(relevance):
        positives = {int(d): float(g) for d, g in rel.items() if g > 0}
        if not positives:
            raise InputError(f"{what}: query {i} has no relevant document (grade > 0)")
        if any(not 0 <= d < n_docs for d in positives):
            raise InputError(f"{what}: query {i} names a document row outside the corpus (0..{n_docs - 1})")
        cleaned.append(positives)
    return cleaned


def _as_trained(config: SupervisedConfig) -> tuple[SupervisedConfig, tuple[float, ...]]:
    """The config as trained (the pairwise objective is the paper's `L_rank` alone: no self-distillation
    term) and the softmax temperatures to try (one for the pairwise objective); the config checked its
    fields when it was made."""
    given = config.temperature
    temperatures = tuple(float(t) for t in (given if isinstance(given, tuple) else (given,)))
    if config.objective == "pairwise":
        return replace(config, self_distillation=0.0), temperatures[:1]
    return config, temperatures


def train_supervised(
    corpus: np.ndarray,
    queries: np.ndarray,
    relevance: Relevance,
    dims: Sequence[int] | None = None,
    config: SupervisedConfig = SupervisedConfig(),
    unsupervised: UnsupervisedConfig = UnsupervisedConfig(),
    adaptor: MatryoshkaAdaptor | None = None,
    validation: tuple[np.ndarray, Relevance] | None = None,
    base_model: str = "unknown",
    device: str | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> MatryoshkaAdaptor:
    """Two-stage training: unsupervised (skipped when `adaptor` is given), then the ranking objective.

    Args:
        corpus: base document embeddings `(n, dim)`.
        queries: base query embeddings `(q, dim)`.
        relevance: per query, `{corpus row: grade}` of its relevant documents (grades > 0 kept).
        validation: `(queries (v, dim), relevance)` for early stopping (e.g. a dev split); default: a
            `config.validation_fraction` share of the training queries is held out. Either way it chooses
            the number of steps; then (`config.refit`) the adaptor is trained again from the stage-one
            adaptor on every labelled query (training and validation) for that many steps.
        unsupervised: settings of stage 1 and of the regulariser.
        adaptor: a stage-one adaptor to start from; its base dim, dims (default: `dims`) and base model
            (unless `base_model` is "unknown") must be the data's (`AdaptorMismatchError` otherwise).

    Returns the adaptor at its best validation nDCG@10 (mean over dims), over `config.temperature`s.
    """
    corpus = check_vectors(corpus, what="corpus embeddings")
    if adaptor is not None:  # a given stage one must fit the data
        adaptor.check_base(corpus.shape[1], None if base_model == "unknown" else base_model)
        dims = dims or adaptor.config.dims
    dims = check_dims(dims or default_dims(corpus.shape[1]), corpus.shape[1])
    if adaptor is not None and adaptor.config.dims != dims:
        raise AdaptorMismatchError(
            f"the given adaptor was trained for dims {list(adaptor.config.dims)}, this training is for dims "
            f"{list(dims)}"
        )
    queries = check_vectors(queries, corpus.shape[1], what="query embeddings")
    relevance = _check_relevance(queries, relevance, len(corpus), "training qrels")
    config, temperatures = _as_trained(config)
    if validation is None:
        train_rows, val_rows = split_validation(len(queries), config.validation_fraction, config.seed)
        validation = (queries[val_rows], [relevance[i] for i in val_rows])
        queries, relevance = queries[train_rows], [relevance[i] for i in train_rows]
    val_queries = check_vectors(validation[0], corpus.shape[1], what="validation query embeddings")
    val_relevance = _check_relevance(val_queries, validation[1], len(corpus), "validation qrels")
    all_queries, all_relevance = np.concatenate([queries, val_queries]), relevance + val_relevance
    resolved = resolve_device(device)
    started = time.perf_counter()
    if adaptor is None:
        adaptor = train_unsupervised(corpus, dims, unsupervised, base_model, str(resolved), progress=progress)
    torch.manual_seed(config.seed)  # the widened MLP's fresh weights
    start = adaptor.widened(max(config.hidden_dim, adaptor.config.hidden_dim)).to(resolved)
    stage_one = start.metadata
    corpus_t = torch.from_numpy(corpus).to(resolved)
    regulariser = _unsupervised_objective(corpus, dims, unsupervised, resolved)[0]
    train_t, val_t = torch.from_numpy(queries).to(resolved), torch.from_numpy(val_queries).to(resolved)
    several = len(temperatures) > 1

    def loss_at(step: int) -> torch.Tensor:
        return ranking.loss(adaptor, step) + config.regularization * regulariser.loss_at(adaptor, step, 1)

    checkpoints = Path(checkpoint_dir) if checkpoint_dir else None
    inputs = {  # what the checkpoints belong to, besides the config
        "unsupervised": unsupervised,
        "corpus": array_fingerprint(corpus),
        "dims": dims,
        "base_model": base_model,
        "start": start.fingerprint(),
    }
    searched: dict[float, dict] = {}
    try:
        for temperature in temperatures:  # one run each; the best validation score wins
            config = replace(config, temperature=temperature)
            adaptor = copy.deepcopy(start)
            ranking = _SupervisedObjective(corpus_t, train_t, relevance, config, dims)
            searched[temperature] = _optimise(
                adaptor,
                loss_at,
                lambda run=adaptor: validation_ndcg(run, corpus_t, val_t, val_relevance, dims),
                config,
                checkpoints / f"temperature-{temperature}" if checkpoints and several else checkpoints,
                run_identity(
                    config,
                    stage="supervised",
                    **inputs,
                    queries=array_fingerprint(queries),
                    relevance=relevance_fingerprint(relevance),
                    validation=[array_fingerprint(val_queries), relevance_fingerprint(val_relevance)],
                ),
                progress,
                f"supervised, temperature {temperature}" if several else "supervised",
            ) | {"adaptor": adaptor}
        by_temperature = {str(t): run["best_score"] for t, run in searched.items()}
        config = replace(config, temperature=max(searched, key=lambda t: searched[t]["best_score"]))
        outcome = searched.pop(config.temperature)
        adaptor = outcome.pop("adaptor")
        searched.clear()  # the other runs' adaptors
        refit_steps = outcome["best_step"] if config.refit else 0
        if refit_steps:
            adaptor = copy.deepcopy(start)
            all_t = torch.from_numpy(all_queries).to(resolved)
            ranking = _SupervisedObjective(corpus_t, all_t, all_relevance, config, dims)
            _optimise(
                adaptor,
                loss_at,
                None,
                replace(config, max_steps=refit_steps),
                checkpoints / "refit" if checkpoints else None,
                run_identity(
                    config,
                    stage="supervised refit",
                    **inputs,
                    queries=array_fingerprint(all_queries),
                    relevance=relevance_fingerprint(all_relevance),
                ),
                progress,
                "supervised refit",
            )
    finally:
        regulariser.corpus.close()
    adaptor.metadata = {
        "training": {
            "mode": "supervised",
            "supervised": asdict(config),
            "unsupervised": asdict(unsupervised),
            "device": str(resolved),
            "seconds": time.perf_counter() - started,
            "corpus_size": len(corpus),
            "train_queries": len(queries),
            "refit": {"steps": refit_steps, "queries": len(all_queries)} if refit_steps else None,
            "stage_one": stage_one,
        },
        "metrics": {
            "validation_ndcg@10": outcome.pop("best_score"),
            **outcome,
            "validation_ndcg@10_by_temperature": by_temperature,
        },
    }
    return adaptor
