"""Stage one: train an adaptor on corpus embeddings alone (the unsupervised objective, early-stopped on the
held-out items)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..adaptor.pca import pca_rotation
from ..adaptor.torch_module import AdaptorConfig, MatryoshkaAdaptor
from ..scoring.kept import MAX_QUERIES, served_prefix_choice
from ..validation import check_dims, check_rows, open_corpus
from .config import UnsupervisedConfig
from .devices import resolve_device
from .distributed import setup
from .loop import optimise
from .neighbours import NeighbourMethod, check_corpus_size
from .record import unsupervised_record
from .run_identity import array_fingerprint, run_identity
from .unsupervised_objective import Model, holdout_split, neighbour_table, unsupervised_objective


def new_adaptor(
    corpus: np.ndarray, dims: tuple[int, ...], config: UnsupervisedConfig, base_model: str
) -> MatryoshkaAdaptor:
    """The adaptor stage one starts from: `f = z` with `z` the corpus's PCA rotation (`start="pca"`) or the
    base vector, its MLP drawn from `config.seed`."""
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


def unsupervised_stage(
    corpus: np.ndarray | str | Path,
    dims: Sequence[int] | None = None,
    config: UnsupervisedConfig = UnsupervisedConfig(),
    base_model: str = "unknown",
    device: str | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    *,
    neighbours: NeighbourMethod = "auto",
    compile: bool = False,
) -> tuple[MatryoshkaAdaptor, np.ndarray]:
    """`train_unsupervised`, also returning the neighbour table `(n, k)` it trained with (for stage two)."""
    what = "corpus embeddings"
    corpus = open_corpus(corpus, what)
    dims = check_dims(dims, corpus.shape[1])
    check_corpus_size(len(corpus), config.k)
    resolve_device(device)  # a missing device fails before the process group or any work
    check_rows(corpus, what)
    context, resolved = setup(device)
    started = time.perf_counter()
    adaptor = new_adaptor(corpus, dims, config, base_model).to(resolved)
    table, neighbour_info = neighbour_table(corpus, config, resolved, context, neighbours)
    objective = unsupervised_objective(corpus, dims, config, resolved, table, context, compile)
    model: Model = context.wrap(adaptor, resolved)
    if compile and context.active:
        model = torch.compile(model)
    loop_started = time.perf_counter()
    try:
        outcome = optimise(
            adaptor,
            lambda step: objective.loss_at(adaptor, step, model=model),
            lambda: context.agree(objective.proxy(adaptor), resolved),
            config.optimiser,
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
    distributed = None
    if context.active:
        distributed = {
            "world_size": context.world_size,
            "backend": context.backend,
            "identical_weights": context.same_on_all_ranks(adaptor.fingerprint()),
        }
    training = unsupervised_record(
        config, str(resolved), len(corpus), neighbour_info, started, loop_started, distributed
    )
    held_out = holdout_split(len(corpus), config)[0]
    queries = held_out if len(held_out) else np.arange(min(len(corpus), MAX_QUERIES))
    served, kept = served_prefix_choice(adaptor, corpus, queries)
    adaptor.config = replace(adaptor.config, served_prefixes=served)
    adaptor.metadata = {
        "training": training,
        "metrics": {"holdout_loss": -outcome.scored(), **outcome.record()},
        "retrieval_kept": {"queries": len(queries), "held_out": bool(len(held_out)), **kept},
    }
    return adaptor, table


def train_unsupervised(
    corpus: np.ndarray | str | Path,
    dims: Sequence[int] | None = None,
    config: UnsupervisedConfig = UnsupervisedConfig(),
    base_model: str = "unknown",
    device: str | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    *,
    neighbours: NeighbourMethod = "auto",
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
            `neighbours.EXACT_MAX_ROWS` rows, a faiss HNSW graph above.
        compile: `torch.compile` the step's loss (worth it on CUDA for long runs).

    Returns the adaptor at its best proxy score, on `device`, with `metadata` holding the training settings,
    seconds, steps, the proxy history and `training.neighbours = {method, seconds, recall_sample}`. It
    serves, per dim, the prefix (adapted or the rotation's) that keeps more of the base's full-dim search on
    the held-out items, and the base ranking at the full dim (`scoring.kept.served_prefix_choice`; the
    scores are in `metadata["retrieval_kept"]`), so no dim serves less than the rotation's prefix keeps. Under
    torchrun (`WORLD_SIZE > 1`) every rank returns the same adaptor (see `distributed`).
    """
    return unsupervised_stage(
        corpus,
        dims,
        config,
        base_model,
        device,
        checkpoint_dir,
        progress,
        neighbours=neighbours,
        compile=compile,
    )[0]
