"""Stage two: the ranking objective on labelled queries, from the stage-one adaptor. Each softmax temperature
is trained and early-stopped on validation nDCG@10 (`search_temperatures`); then the chosen run's step count
is trained again on every labelled query (`refit`)."""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..adaptor import MatryoshkaAdaptor
from ..devices import resolve_device
from ..errors import AdaptorMismatchError
from ..run_identity import array_fingerprint, relevance_fingerprint, run_identity
from ..validation import check_dims, check_vectors, default_dims
from .config import Relevance, SupervisedConfig, UnsupervisedConfig
from .labelled import check_relevance, split_validation, validation_ndcg
from .loop import optimise
from .ranking import RankingObjective
from .unsupervised import unsupervised_stage
from .unsupervised_objective import UnsupervisedObjective, neighbour_table, unsupervised_objective

# which weights the recorded validation numbers measured
PRE_REFIT = "the chosen run before the refit (the returned adaptor is the refit, trained on validation too)"
RETURNED = "the returned adaptor"


@dataclass(frozen=True)
class LabelledQueries:
    """Query vectors `(q, dim)` on the training device and, per query, `{corpus row: grade > 0}`."""

    vectors: torch.Tensor
    relevance: list[dict[int, float]]


def as_trained(config: SupervisedConfig) -> SupervisedConfig:
    """The config as trained: the pairwise objective is the paper's `L_rank` alone (no self-distillation
    term); the config checked its fields when it was made."""
    return replace(config, self_distillation=0.0) if config.objective == "pairwise" else config


def supervised_loss(
    ranking: RankingObjective,
    regulariser: UnsupervisedObjective,
    weight: float,
    adaptor: MatryoshkaAdaptor,
    step: int,
) -> torch.Tensor:
    """Step `step`'s loss: the ranking loss plus `weight` x the unsupervised objective on a corpus batch."""
    return ranking.loss(adaptor, step) + weight * regulariser.loss_at(adaptor, step, 1)


def train_run(
    start: MatryoshkaAdaptor,
    config: SupervisedConfig,
    corpus: torch.Tensor,
    queries: LabelledQueries,
    regulariser: UnsupervisedObjective,
    dims: tuple[int, ...],
    score: Callable[[MatryoshkaAdaptor], float] | None,
    steps: int,
    checkpoint_dir: Path | None,
    identity: dict,
    progress: bool,
    description: str,
) -> tuple[MatryoshkaAdaptor, dict]:
    """A copy of `start` trained on `queries` for up to `steps` steps (early-stopped on `score(adaptor)`
    unless None) and the loop's outcome (`loop.optimise`)."""
    adaptor = copy.deepcopy(start)
    ranking = RankingObjective(corpus, queries.vectors, queries.relevance, config, dims)
    outcome = optimise(
        adaptor,
        functools.partial(supervised_loss, ranking, regulariser, config.regularization, adaptor),
        functools.partial(score, adaptor) if score is not None else None,
        replace(config.optimiser, max_steps=steps),
        checkpoint_dir,
        identity,
        progress,
        description,
    )
    return adaptor, outcome


def search_temperatures(
    start: MatryoshkaAdaptor,
    config: SupervisedConfig,
    corpus: torch.Tensor,
    train: LabelledQueries,
    validation: LabelledQueries,
    regulariser: UnsupervisedObjective,
    dims: tuple[int, ...],
    checkpoint_dir: Path | None,
    identity_inputs: dict,
    progress: bool,
) -> tuple[SupervisedConfig, MatryoshkaAdaptor, dict, dict[str, float]]:
    """One early-stopped run from `start` per temperature of `config.temperatures`, scored by validation
    nDCG@10 (mean over dims); the best score wins (the first temperature on a tie).

    Returns the config at the chosen temperature, its run's adaptor and outcome, and each temperature's best
    validation score."""
    temperatures = config.temperatures
    several = len(temperatures) > 1
    score = functools.partial(_validation_score, corpus=corpus, validation=validation, dims=dims)
    runs: dict[float, tuple[MatryoshkaAdaptor, dict]] = {}
    for temperature in temperatures:
        run_config = replace(config, temperature=temperature)
        runs[temperature] = train_run(
            start,
            run_config,
            corpus,
            train,
            regulariser,
            dims,
            score,
            config.max_steps,
            checkpoint_dir / f"temperature-{temperature}" if checkpoint_dir and several else checkpoint_dir,
            run_identity(run_config, stage="supervised", **identity_inputs),
            progress,
            f"supervised, temperature {temperature}" if several else "supervised",
        )
    by_temperature = {str(t): outcome["best_score"] for t, (_, outcome) in runs.items()}
    chosen = max(runs, key=lambda t: runs[t][1]["best_score"])
    adaptor, outcome = runs[chosen]
    return replace(config, temperature=chosen), adaptor, outcome, by_temperature


def _validation_score(
    adaptor: MatryoshkaAdaptor, corpus: torch.Tensor, validation: LabelledQueries, dims: tuple[int, ...]
) -> float:
    return validation_ndcg(adaptor, corpus, validation.vectors, validation.relevance, dims)


def refit(
    start: MatryoshkaAdaptor,
    config: SupervisedConfig,
    steps: int,
    corpus: torch.Tensor,
    labelled: LabelledQueries,
    regulariser: UnsupervisedObjective,
    dims: tuple[int, ...],
    checkpoint_dir: Path | None,
    identity: dict,
    progress: bool,
) -> tuple[MatryoshkaAdaptor, dict]:
    """A copy of `start` trained for `steps` steps on `labelled` (every labelled query: training and
    validation) at `config`'s (chosen) temperature, with no early stopping, and the loop's outcome."""
    return train_run(
        start,
        config,
        corpus,
        labelled,
        regulariser,
        dims,
        None,
        steps,
        checkpoint_dir,
        identity,
        progress,
        "supervised refit",
    )


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

    Returns the refit adaptor (`config.refit`, when validation chose at least one step), else the chosen
    run's weights at their best validation nDCG@10 (mean over dims). `metadata["metrics"]` holds the
    chosen run's validation numbers, and `weights_measured` says which weights they measured (`PRE_REFIT`
    or `RETURNED`); `metadata["training"]["refit"]` the refit's steps and queries.
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
    relevance = check_relevance(queries, relevance, len(corpus), "training qrels")
    config = as_trained(config)
    if validation is None:
        train_rows, val_rows = split_validation(len(queries), config.validation_fraction, config.seed)
        validation = (queries[val_rows], [relevance[i] for i in val_rows])
        queries, relevance = queries[train_rows], [relevance[i] for i in train_rows]
    val_queries = check_vectors(validation[0], corpus.shape[1], what="validation query embeddings")
    val_relevance = check_relevance(val_queries, validation[1], len(corpus), "validation qrels")
    all_queries, all_relevance = np.concatenate([queries, val_queries]), relevance + val_relevance
    resolved = resolve_device(device)
    started = time.perf_counter()
    if adaptor is None:
        adaptor, table = unsupervised_stage(
            corpus, dims, unsupervised, base_model, str(resolved), progress=progress
        )
    else:
        table = neighbour_table(corpus, unsupervised, resolved)[0]
    torch.manual_seed(config.seed)  # the widened MLP's fresh weights
    start = adaptor.widened(max(config.hidden_dim, adaptor.config.hidden_dim)).to(resolved)
    # the labelled stage is judged on labelled validation: it serves its adapted prefix at every dim
    start.config = replace(start.config, served_prefixes=())
    stage_one = start.metadata
    corpus_t = torch.from_numpy(corpus).to(resolved)
    regulariser = unsupervised_objective(corpus, dims, unsupervised, resolved, table)
    train = LabelledQueries(torch.from_numpy(queries).to(resolved), relevance)
    held = LabelledQueries(torch.from_numpy(val_queries).to(resolved), val_relevance)
    checkpoints = Path(checkpoint_dir) if checkpoint_dir else None
    inputs = {  # what the checkpoints belong to, besides the config
        "unsupervised": unsupervised,
        "corpus": array_fingerprint(corpus),
        "dims": dims,
        "base_model": base_model,
        "start": start.fingerprint(),
    }
    try:
        config, adaptor, outcome, by_temperature = search_temperatures(
            start,
            config,
            corpus_t,
            train,
            held,
            regulariser,
            dims,
            checkpoints,
            inputs
            | {
                "queries": array_fingerprint(queries),
                "relevance": relevance_fingerprint(relevance),
                "validation": [array_fingerprint(val_queries), relevance_fingerprint(val_relevance)],
            },
            progress,
        )
        refitted = None  # the refit's loop outcome
        if config.refit and outcome["best_step"]:
            adaptor, refitted = refit(
                start,
                config,
                outcome["best_step"],
                corpus_t,
                LabelledQueries(torch.from_numpy(all_queries).to(resolved), all_relevance),
                regulariser,
                dims,
                checkpoints / "refit" if checkpoints else None,
                run_identity(
                    config,
                    stage="supervised refit",
                    **inputs,
                    queries=array_fingerprint(all_queries),
                    relevance=relevance_fingerprint(all_relevance),
                ),
                progress,
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
            "refit": {"steps": refitted["steps"], "queries": len(all_queries)} if refitted else None,
            "stage_one": stage_one,
        },
        "metrics": {  # of the chosen run's kept weights: the returned ones unless refit
            "weights_measured": PRE_REFIT if refitted else RETURNED,
            "validation_ndcg@10": outcome.pop("best_score"),
            **outcome,
            "validation_ndcg@10_by_temperature": by_temperature,
        },
    }
    return adaptor
