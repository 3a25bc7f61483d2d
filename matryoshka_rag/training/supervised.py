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

from ..adaptor.torch_module import MatryoshkaAdaptor
from ..errors import AdaptorMismatchError
from ..scoring.kept import MIN_CORPUS_ROWS, query_rows, served_kept
from ..validation import check_dims, check_vectors, default_dims
from .config import Relevance, SupervisedConfig, UnsupervisedConfig
from .devices import resolve_device
from .labelled import (
    check_relevance,
    split_validation,
    stage_verdict,
    validation_ndcg,
    validation_ndcg_per_query,
)
from .loop import optimise
from .ranking import RankingObjective
from .run_identity import array_fingerprint, relevance_fingerprint, run_identity
from .unsupervised import unsupervised_stage
from .unsupervised_objective import UnsupervisedObjective, neighbour_table, unsupervised_objective

# which weights the recorded validation numbers measured
PRE_REFIT = "the chosen run before the refit (the returned adaptor is the refit, trained on validation too)"
RETURNED = "the returned adaptor"
DROPPED = "the chosen run, not returned: validation dropped the stage (the returned adaptor is stage one's)"


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

    The stage is kept only when validation says it beats its start (`labelled.stage_verdict`: at every dim
    the mean rose by more than `paired.CLEARLY_SE` standard errors), with at least `config.min_validation`
    validation queries (`too_few_to_validate`); else (unless `config.validate_stage=False`) the stage-one
    adaptor is returned (`dropped_stage`). `metadata["training"]["supervised_stage"]` says which and why.

    Returns the refit adaptor (`config.refit`, when the stage is kept), else the chosen run's weights at their
    best validation nDCG@10 (mean over dims), or stage one's when the stage is dropped.
    `metadata["metrics"]` holds the chosen run's validation numbers (per dim in
    `validation_ndcg@10_by_dim`: start, trained, standard error), and `weights_measured` says which weights
    they measured (`PRE_REFIT`, `RETURNED` or `DROPPED`); `metadata["training"]["refit"]` the refit's steps
    and queries.
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
    too_few = too_few_to_validate(len(queries), None if validation is None else len(validation[0]), config)
    if validation is None and not too_few:
        train_rows, val_rows = split_validation(
            len(queries), config.validation_fraction, config.seed, config.min_validation
        )
        validation = (queries[val_rows], [relevance[i] for i in val_rows])
        queries, relevance = queries[train_rows], [relevance[i] for i in train_rows]
    resolved = resolve_device(device)
    started = time.perf_counter()
    if adaptor is None:
        adaptor, table = unsupervised_stage(
            corpus, dims, unsupervised, base_model, str(resolved), progress=progress
        )
    elif not too_few:
        table = neighbour_table(corpus, unsupervised, resolved)[0]
    stage_one_adaptor = adaptor
    summary = {
        "mode": "supervised",
        "supervised": asdict(config),
        "unsupervised": asdict(unsupervised),
        "device": str(resolved),
        "corpus_size": len(corpus),
        "train_queries": len(queries),
        "stage_one": stage_one_adaptor.metadata,
    }
    if too_few:
        return dropped_stage(
            stage_one_adaptor, summary | {"seconds": time.perf_counter() - started}, too_few, {}
        )
    val_queries = check_vectors(validation[0], corpus.shape[1], what="validation query embeddings")
    val_relevance = check_relevance(val_queries, validation[1], len(corpus), "validation qrels")
    all_queries, all_relevance = np.concatenate([queries, val_queries]), relevance + val_relevance
    torch.manual_seed(config.seed)  # the widened MLP's fresh weights
    start = adaptor.widened(max(config.hidden_dim, adaptor.config.hidden_dim)).to(resolved)
    # the labelled stage is judged on labelled validation: it serves its adapted prefix at every dim
    start.config = replace(start.config, served_prefixes=())
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
        with torch.no_grad():
            kept, reason, by_dim = stage_verdict(
                validation_ndcg_per_query(start, corpus_t, held.vectors, held.relevance, dims),
                validation_ndcg_per_query(adaptor, corpus_t, held.vectors, held.relevance, dims),
            )
        if not (kept or config.validate_stage):
            kept, reason = True, f"kept unvalidated (SupervisedConfig.validate_stage=False): {reason}"
        refitted = None  # the refit's loop outcome
        if kept and config.refit:
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
    summary["supervised"] = asdict(config)
    metrics = {  # of the chosen run's kept weights: the returned ones unless refit or dropped
        "weights_measured": RETURNED if kept and not refitted else PRE_REFIT if kept else DROPPED,
        "validation_ndcg@10": outcome.pop("best_score"),
        **outcome,
        "validation_ndcg@10_by_temperature": by_temperature,
        "validation_ndcg@10_by_dim": by_dim,
    }
    if not kept:
        return dropped_stage(
            stage_one_adaptor, summary | {"seconds": time.perf_counter() - started}, reason, metrics
        )
    adaptor.metadata = {
        "training": summary
        | {
            "seconds": time.perf_counter() - started,
            "refit": {"steps": refitted["steps"], "queries": len(all_queries)} if refitted else None,
            "supervised_stage": {"kept": True, "reason": reason},
        },
        "metrics": metrics,
        **corpus_estimate(adaptor, corpus),
    }
    return adaptor


def corpus_estimate(adaptor: MatryoshkaAdaptor, corpus: np.ndarray) -> dict:
    """`{"retrieval_kept": {"queries", "held_out", "served": {dim: kept}}}`: the label-free estimate of the
    supervised adaptor's served prefixes (`scoring.kept.served_kept`, random corpus items as queries), what
    `recommend` reads; `{}` for a corpus under `scoring.kept.MIN_CORPUS_ROWS` vectors."""
    if len(corpus) < MIN_CORPUS_ROWS:
        return {}
    rows = query_rows(len(corpus))
    kept = served_kept(adaptor, corpus, rows)
    served = {str(dim): round(value, 4) for dim, value in kept.items()}
    return {"retrieval_kept": {"queries": len(rows), "held_out": False, "served": served}}


def too_few_to_validate(n_queries: int, n_validation: int | None, config: SupervisedConfig) -> str:
    """Why `n_queries` labelled queries (and `n_validation` given validation queries, or None to hold them
    out of the labelled ones) cannot validate a supervised stage; "" when they can."""
    need = config.min_validation
    if n_validation is None and n_queries < 2 * need:
        return (
            f"{n_queries} labelled queries are too few to validate the supervised stage: it takes "
            f"{need} held out for validation (SupervisedConfig.min_validation) and as many to train on"
        )
    if n_validation is not None and n_validation < need:
        return (
            f"{n_validation} validation queries are too few to validate the supervised stage "
            f"(SupervisedConfig.min_validation = {need})"
        )
    return ""


def dropped_stage(
    stage_one: MatryoshkaAdaptor, summary: dict, reason: str, metrics: dict
) -> MatryoshkaAdaptor:
    """A copy of the stage-one adaptor (its label-free estimate kept), its metadata saying the supervised stage
    was dropped and why
    (`summary`: the training record; `metrics`: the chosen run's validation numbers, when validation
    ran)."""
    adaptor = copy.deepcopy(stage_one)
    estimate = stage_one.metadata.get("retrieval_kept")
    adaptor.metadata = {
        "training": summary | {"refit": None, "supervised_stage": {"kept": False, "reason": reason}},
        "metrics": metrics
        or {"weights_measured": None, "validation_ndcg@10": None, "best_step": 0, "steps": 0},
        **({"retrieval_kept": estimate} if estimate else {}),
    }
    return adaptor
