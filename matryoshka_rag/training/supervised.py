"""Stage two: the ranking objective on labelled queries, from the stage-one adaptor. Each softmax temperature
is trained and early-stopped on validation nDCG@10 (`search_temperatures`); the stage is kept only as
validation says (`judge_stage`); then the chosen run's step count is trained again on every labelled query
(`refit`)."""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..adaptor.torch_module import MatryoshkaAdaptor
from ..errors import AdaptorMismatchError, InputError
from ..scoring.kept import MIN_CORPUS_ROWS, query_rows, served_kept
from ..validation import check_dims, check_vectors
from .config import Relevance, SupervisedConfig, UnsupervisedConfig
from .devices import resolve_device
from .labelled import (
    check_relevance,
    split_validation,
    stage_verdict,
    validation_ndcg,
    validation_ndcg_per_query,
)
from .loop import LoopOutcome, Paused, optimise
from .ranking import RankingObjective, adapt_all
from .record import PhaseClock, SupervisedRun, supervised_record
from .run_identity import array_fingerprint, relevance_fingerprint, run_identity
from .unsupervised import unsupervised_stage
from .unsupervised_objective import UnsupervisedObjective, neighbour_table, unsupervised_objective

# which weights the recorded validation numbers measured
PRE_REFIT = "the chosen run before the refit (the returned adaptor is the refit, trained on validation too)"
RETURNED = "the returned adaptor"
DROPPED = "the chosen run, not returned: validation dropped the stage (the returned adaptor is stage one's)"
# the validation numbers of a stage too few queries could not validate
NOT_VALIDATED: dict[str, object] = {
    "weights_measured": None,
    "validation_ndcg@10": None,
    "best_step": 0,
    "steps": 0,
}


@dataclass(frozen=True)
class LabelledQueries:
    """Query vectors `(q, dim)` on the training device and, per query, `{corpus row: grade > 0}`."""

    vectors: torch.Tensor
    relevance: list[dict[int, float]]


@dataclass(frozen=True)
class LabelledArrays:
    """Query vectors `(q, dim)` on the host and, per query, `{corpus row: grade > 0}`."""

    vectors: np.ndarray
    relevance: list[dict[int, float]]

    def rows(self, positions: list[int]) -> LabelledArrays:
        """The queries at `positions`, in that order."""
        return LabelledArrays(self.vectors[positions], [self.relevance[i] for i in positions])

    def joined(self, other: LabelledArrays) -> LabelledArrays:
        """These queries, then `other`'s."""
        return LabelledArrays(np.concatenate([self.vectors, other.vectors]), self.relevance + other.relevance)

    def on(self, device: torch.device) -> LabelledQueries:
        """The same queries with their vectors on `device`."""
        return LabelledQueries(torch.from_numpy(self.vectors).to(device), self.relevance)

    def fingerprints(self) -> list[str]:
        """`[vectors, relevance]` fingerprints, as a checkpoint's identity records them (`run_identity`)."""
        return [array_fingerprint(self.vectors), relevance_fingerprint(self.relevance)]


@dataclass(frozen=True)
class StageOutcome:
    """What the supervised stage did: its settings (at the chosen temperature once validation ran), the
    verdict and why, the weights it returns when kept, the chosen run's validation numbers
    (`metadata["metrics"]`) and the refit's `{steps, queries}` (None without one)."""

    config: SupervisedConfig
    kept: bool
    reason: str
    adaptor: MatryoshkaAdaptor
    metrics: dict[str, object]
    refit: dict[str, int] | None


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
    """Step `step`'s loss: the ranking loss plus `weight` x the unsupervised objective on a corpus batch. When
    the ranking adapts the whole corpus, the regulariser reads its batch's adapted rows from that one pass."""
    adapted = adapt_all(adaptor, ranking.corpus) if ranking.ranks_whole_corpus else None
    return ranking.loss(adaptor, step, adapted) + weight * regulariser.loss_at(
        adaptor, step, 1, adapted_corpus=adapted
    )


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
    paused: Paused | None = None,
) -> tuple[MatryoshkaAdaptor, LoopOutcome]:
    """A copy of `start` trained on `queries` for up to `steps` steps (early-stopped on `score(adaptor)`
    unless None; continuing the `paused` run when given) and the loop's outcome (`loop.optimise`)."""
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
        paused=paused,
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
    clock: PhaseClock,
) -> tuple[SupervisedConfig, MatryoshkaAdaptor, LoopOutcome, dict[str, float]]:
    """The early-stopped run from `start` at the temperature validation picks: with several temperatures
    (`config.temperatures`), each trains `config.temperature_steps` steps (0: its whole early-stopped run),
    the best validation nDCG@10 (mean over dims) reached by then picks one (the first on a tie), and that run
    continues where it stopped. `clock` times the phases "temperature search" and "chosen run" (a run
    continued, or the one temperature's).

    Returns the config at the chosen temperature, its run's adaptor and outcome, and each temperature's best
    validation score within the search's steps (with one temperature: its run's best)."""
    temperatures = config.temperatures
    several = len(temperatures) > 1
    score = functools.partial(_validation_score, corpus=corpus, validation=validation, dims=dims)

    def run(temperature: float, steps: int, paused: Paused | None) -> tuple[MatryoshkaAdaptor, LoopOutcome]:
        run_config = replace(config, temperature=temperature)
        return train_run(
            start,
            run_config,
            corpus,
            train,
            regulariser,
            dims,
            score,
            steps,
            checkpoint_dir / f"temperature-{temperature}" if checkpoint_dir and several else checkpoint_dir,
            run_identity(run_config, stage="supervised", **identity_inputs),
            progress,
            f"supervised, temperature {temperature}" if several else "supervised",
            paused,
        )

    if not several:
        with clock.phase("chosen run"):
            adaptor, outcome = run(temperatures[0], config.max_steps, None)
        return (
            replace(config, temperature=temperatures[0]),
            adaptor,
            outcome,
            {str(temperatures[0]): outcome.scored()},
        )
    search = min(config.temperature_steps or config.max_steps, config.max_steps)
    with clock.phase("temperature search"):
        searched = {t: run(t, search, None) for t in temperatures}
    by_temperature = {str(t): outcome.best_until(search) for t, (_, outcome) in searched.items()}
    chosen = max(temperatures, key=lambda t: searched[t][1].best_until(search))
    adaptor, outcome = searched[chosen]
    if search < config.max_steps:
        with clock.phase("chosen run"):
            adaptor, outcome = run(chosen, config.max_steps, outcome.paused)
    return replace(config, temperature=chosen), adaptor, outcome, by_temperature


def _validation_score(
    adaptor: MatryoshkaAdaptor, corpus: torch.Tensor, validation: LabelledQueries, dims: tuple[int, ...]
) -> float:
    return validation_ndcg(adaptor, corpus, validation.vectors, validation.relevance, dims)


def judge_stage(
    start: MatryoshkaAdaptor,
    trained: MatryoshkaAdaptor,
    corpus: torch.Tensor,
    validation: LabelledQueries,
    dims: tuple[int, ...],
    validate: bool,
) -> tuple[bool, str, dict]:
    """`labelled.stage_verdict` of `trained` against its `start` on the validation queries over `corpus
    (n, dim)`: whether to keep the stage, why, and the numbers per dim. Without `validate` the stage is kept
    whatever the verdict (the reason says so)."""
    with torch.no_grad():
        kept, reason, by_dim = stage_verdict(
            validation_ndcg_per_query(start, corpus, validation.vectors, validation.relevance, dims),
            validation_ndcg_per_query(trained, corpus, validation.vectors, validation.relevance, dims),
        )
    if not (kept or validate):
        kept, reason = True, f"kept unvalidated (SupervisedConfig.validate_stage=False): {reason}"
    return kept, reason, by_dim


def refit(
    start: MatryoshkaAdaptor,
    config: SupervisedConfig,
    steps: int,
    corpus: torch.Tensor,
    labelled: LabelledArrays,
    regulariser: UnsupervisedObjective,
    dims: tuple[int, ...],
    checkpoint_dir: Path | None,
    identity_inputs: dict,
    progress: bool,
) -> tuple[MatryoshkaAdaptor, LoopOutcome]:
    """A copy of `start` trained for `steps` steps on `labelled` (every labelled query: training and
    validation) at `config`'s (chosen) temperature, with no early stopping, and the loop's outcome; its
    checkpoints go to `checkpoint_dir / "refit"`."""
    queries, relevance = labelled.fingerprints()
    return train_run(
        start,
        config,
        corpus,
        labelled.on(corpus.device),
        regulariser,
        dims,
        None,
        steps,
        checkpoint_dir / "refit" if checkpoint_dir else None,
        run_identity(
            config, stage="supervised refit", **identity_inputs, queries=queries, relevance=relevance
        ),
        progress,
        "supervised refit",
    )


def supervised_stage(
    stage_one: MatryoshkaAdaptor,
    corpus: np.ndarray,
    train: LabelledArrays,
    validation: LabelledArrays,
    config: SupervisedConfig,
    unsupervised: UnsupervisedConfig,
    dims: tuple[int, ...],
    table: np.ndarray | None,
    device: torch.device,
    base_model: str,
    checkpoint_dir: Path | None,
    progress: bool,
    clock: PhaseClock,
) -> StageOutcome:
    """The supervised stage (`validated_stage`) from `stage_one`, widened to `config.hidden_dim`, on `corpus
    (n, dim)` on `device`. The regulariser samples with `table`, stage one's neighbour table `(n, k)` (built
    here when None: `clock`'s phase "neighbour table")."""
    if table is None:
        with clock.phase("neighbour table"):
            table = neighbour_table(corpus, unsupervised, device)[0]
    torch.manual_seed(config.seed)  # the widened MLP's fresh weights
    start = stage_one.widened(max(config.hidden_dim, stage_one.config.hidden_dim)).to(device)
    # the labelled stage is judged on labelled validation: it serves its adapted prefix at every dim
    start.config = replace(start.config, served_prefixes=())
    regulariser = unsupervised_objective(corpus, dims, unsupervised, device, table)
    inputs = {  # what the checkpoints belong to, besides the config and the queries
        "unsupervised": unsupervised,
        "corpus": array_fingerprint(corpus),
        "dims": dims,
        "base_model": base_model,
        "start": start.fingerprint(),
    }
    try:
        return validated_stage(
            start,
            torch.from_numpy(corpus).to(device),
            train,
            validation,
            config,
            regulariser,
            dims,
            checkpoint_dir,
            inputs,
            progress,
            clock,
        )
    finally:
        regulariser.corpus.close()


def validated_stage(
    start: MatryoshkaAdaptor,
    corpus: torch.Tensor,
    train: LabelledArrays,
    validation: LabelledArrays,
    config: SupervisedConfig,
    regulariser: UnsupervisedObjective,
    dims: tuple[int, ...],
    checkpoint_dir: Path | None,
    identity_inputs: dict,
    progress: bool,
    clock: PhaseClock,
) -> StageOutcome:
    """From `start` over `corpus (n, dim)`: the temperature search on `train`, early-stopped on `validation`
    (`search_temperatures`), the verdict (`judge_stage`), and the refit on both (`refit`) when the stage is
    kept and `config.refit`; `clock` times each phase."""
    held = validation.on(corpus.device)
    queries, relevance = train.fingerprints()
    config, adaptor, outcome, by_temperature = search_temperatures(
        start,
        config,
        corpus,
        train.on(corpus.device),
        held,
        regulariser,
        dims,
        checkpoint_dir,
        identity_inputs
        | {"queries": queries, "relevance": relevance, "validation": validation.fingerprints()},
        progress,
        clock,
    )
    with clock.phase("verdict"):
        kept, reason, by_dim = judge_stage(start, adaptor, corpus, held, dims, config.validate_stage)
    refitted = None  # the refit's loop outcome
    if kept and config.refit:
        with clock.phase("refit"):
            adaptor, refitted = refit(
                start,
                config,
                outcome.best_step,
                corpus,
                train.joined(validation),
                regulariser,
                dims,
                checkpoint_dir,
                identity_inputs,
                progress,
            )
    metrics = {  # of the chosen run's kept weights: the returned ones unless refit or dropped
        "weights_measured": RETURNED if kept and not refitted else PRE_REFIT if kept else DROPPED,
        "validation_ndcg@10": outcome.best_score,
        **outcome.record(),
        "validation_ndcg@10_by_temperature": by_temperature,
        "validation_ndcg@10_by_dim": by_dim,
    }
    queries_refit = len(train.vectors) + len(validation.vectors)
    refit_record = {"steps": refitted.steps, "queries": queries_refit} if refitted else None
    return StageOutcome(config, kept, reason, adaptor, metrics, refit_record)


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
    *,
    stage_one_table: np.ndarray | None = None,
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
        stage_one_table: with `adaptor`, the neighbour table `(n, k)` it trained with on this corpus
            (`unsupervised.unsupervised_stage` returns it), so that the regulariser does not build it again;
            it must be `unsupervised`'s (its k, holdout and seed).

    The stage is kept only when validation says it beats its start (`labelled.stage_verdict`: at every dim
    the mean rose by more than `paired.CLEARLY_SE` standard errors), with at least `config.min_validation`
    validation queries (`too_few_to_validate`); else (unless `config.validate_stage=False`) the stage-one
    adaptor is returned. `metadata["training"]` records which (`record.supervised_record`: `mode` is
    "supervised" only for a kept stage) and why (`supervised_stage`).

    Returns the refit adaptor (`config.refit`, when the stage is kept), else the chosen run's weights at their
    best validation nDCG@10 (mean over dims), or stage one's when the stage is dropped.
    `metadata["metrics"]` holds the chosen run's validation numbers (per dim in
    `validation_ndcg@10_by_dim`: start, trained, standard error), and `weights_measured` says which weights
    they measured (`PRE_REFIT`, `RETURNED` or `DROPPED`); `metadata["training"]["refit"]` the refit's steps
    and queries.
    """
    corpus, dims = check_start(corpus, dims, adaptor, base_model, stage_one_table, unsupervised.k)
    config = as_trained(config)
    train, held, too_few = labelled_sets(corpus, queries, relevance, validation, config)
    resolved = resolve_device(device)
    started = time.perf_counter()
    if adaptor is None:
        adaptor, stage_one_table = unsupervised_stage(
            corpus, dims, unsupervised, base_model, str(resolved), progress=progress
        )
    run = SupervisedRun(
        unsupervised, str(resolved), len(corpus), len(train.vectors), adaptor.metadata, started
    )
    clock = PhaseClock()
    if held is None:
        stage = StageOutcome(config, False, too_few, adaptor, dict(NOT_VALIDATED), None)
    else:
        checkpoints = Path(checkpoint_dir) if checkpoint_dir else None
        stage = supervised_stage(
            adaptor,
            corpus,
            train,
            held,
            config,
            unsupervised,
            dims,
            stage_one_table,
            resolved,
            base_model,
            checkpoints,
            progress,
            clock,
        )
    return returned_adaptor(run, adaptor, stage, corpus, clock)


def check_start(
    corpus: np.ndarray,
    dims: Sequence[int] | None,
    adaptor: MatryoshkaAdaptor | None,
    base_model: str,
    table: np.ndarray | None,
    k: int,
) -> tuple[np.ndarray, tuple[int, ...]]:
    """The corpus `(n, dim)` checked (`validation.check_vectors`) and the dims (default: the given adaptor's,
    else `validation.default_dims`). A given stage-one `adaptor` must fit them (`AdaptorMismatchError`); a
    given neighbour `table` must come with it and be `(n, k)` (`InputError`)."""
    corpus = check_vectors(corpus, what="corpus embeddings")
    if adaptor is not None:  # a given stage one must fit the data
        adaptor.check_base(corpus.shape[1], None if base_model == "unknown" else base_model)
        dims = dims or adaptor.config.dims
    checked = check_dims(dims, corpus.shape[1])
    if adaptor is not None and adaptor.config.dims != checked:
        raise AdaptorMismatchError(
            f"the given adaptor was trained for dims {list(adaptor.config.dims)}, this training is for dims "
            f"{list(checked)}"
        )
    if table is not None and (adaptor is None or table.shape != (len(corpus), k)):
        raise InputError(
            f"stage_one_table: expected the given stage-one adaptor's neighbour table {(len(corpus), k)}, got "
            f"{'no adaptor' if adaptor is None else f'shape {table.shape}'}"
        )
    return corpus, checked


def labelled_sets(
    corpus: np.ndarray,
    queries: np.ndarray,
    relevance: Relevance,
    validation: tuple[np.ndarray, Relevance] | None,
    config: SupervisedConfig,
) -> tuple[LabelledArrays, LabelledArrays | None, str]:
    """The training queries, the validation queries (`validation`, or a `config.validation_fraction` share
    held out of `queries`, `labelled.split_validation`), checked against `corpus (n, dim)`, and "".
    When they are too few to validate the stage: every training query, None, and why
    (`too_few_to_validate`)."""
    dim, n_docs = corpus.shape[1], len(corpus)
    queries = check_vectors(queries, dim, what="query embeddings")
    labelled = LabelledArrays(queries, check_relevance(queries, relevance, n_docs, "training qrels"))
    too_few = too_few_to_validate(len(queries), None if validation is None else len(validation[0]), config)
    if too_few:
        return labelled, None, too_few
    if validation is None:
        train_rows, val_rows = split_validation(
            len(queries), config.validation_fraction, config.seed, config.min_validation
        )
        return labelled.rows(train_rows), labelled.rows(val_rows), ""
    val_queries = check_vectors(validation[0], dim, what="validation query embeddings")
    val_relevance = check_relevance(val_queries, validation[1], n_docs, "validation qrels")
    return labelled, LabelledArrays(val_queries, val_relevance), ""


def returned_adaptor(
    run: SupervisedRun,
    stage_one: MatryoshkaAdaptor,
    stage: StageOutcome,
    corpus: np.ndarray,
    clock: PhaseClock,
) -> MatryoshkaAdaptor:
    """The adaptor a supervised training call returns, with its metadata: the stage's weights when kept
    (with their `corpus_estimate`, `clock`'s phase "corpus estimate"), else a copy of `stage_one` (its
    label-free estimate kept); the record holds `clock`'s phases."""
    if stage.kept:
        with clock.phase("corpus estimate"):
            adaptor, estimate = stage.adaptor, corpus_estimate(stage.adaptor, corpus)
    else:
        found = stage_one.metadata.get("retrieval_kept")
        adaptor, estimate = copy.deepcopy(stage_one), {"retrieval_kept": found} if found else {}
    training = supervised_record(run, stage.config, stage.kept, stage.reason, stage.refit, clock.rounded())
    adaptor.metadata = {"training": training, "metrics": stage.metrics, **estimate}
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
