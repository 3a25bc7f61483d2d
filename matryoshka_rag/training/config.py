"""Training settings: the optimiser's (shared by both stages), each stage's, and their checks (torch-free).

Every field is checked when a config is made, naming the field and its allowed values; the allowed values of
the choices live in `training_options`, which the CLI reads too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

from ..errors import InputError
from ..training_options import Start, SupervisedObjective, UnsupervisedObjective, check_bool, check_number
from ..validation import check_choice, check_int

Relevance = Sequence[Mapping[int, float]]  # per query: corpus row -> grade


@dataclass(frozen=True)
class OptimiserConfig:
    """What the optimisation loop reads: Adam's learning rate, the step budget, how often the early-stopping
    score is evaluated, and how many evaluations without gain stop the run."""

    lr: float
    max_steps: int
    eval_every: int
    patience: int

    def __post_init__(self) -> None:
        """Raise `InputError` naming the first field outside its allowed values."""
        check_number("lr", self.lr, 0)
        for name in ("max_steps", "eval_every", "patience"):
            check_int(name, getattr(self, name), 1)


@dataclass(frozen=True)
class UnsupervisedConfig:
    """Settings of unsupervised training (paper defaults noted where ours differ; BENCHMARKS.md, "Quality
    by dim", says why).

    `objective="paper"` is `L_topk + alpha*L_pair + beta*L_rec` exactly; `"listwise"` (default) replaces the
    L1 terms by a KL between softmaxes of full-dim and prefix cosines over batch items and k nearest
    neighbours. `start="pca"` starts `f` from the corpus's PCA rotation (the paper starts from the identity).
    """

    objective: UnsupervisedObjective = "listwise"
    start: Start = "pca"
    k: int = 10
    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 0.05
    batch_size: int = 512  # paper: 128
    lr: float = 3e-4  # paper: 1e-3
    max_steps: int = 400  # paper: 5000
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
        self.optimiser  # noqa: B018 - made to check lr, max_steps, eval_every and patience
        for name, minimum in (
            ("k", 1),
            ("batch_size", 1),
            ("holdout", 0),
            ("hidden_dim", 0),
            ("num_layers", 1),
        ):
            check_int(name, getattr(self, name), minimum)
        check_int("seed", self.seed, 0)
        check_number("alpha", self.alpha, 0, open_low=False)
        check_number("beta", self.beta, 0, open_low=False)
        check_number("temperature", self.temperature, 0)

    @property
    def optimiser(self) -> OptimiserConfig:
        """The optimisation loop's settings."""
        return OptimiserConfig(self.lr, self.max_steps, self.eval_every, self.patience)


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
    With several softmax `temperature`s, each is trained (early-stopped on validation) and the best validation
    score wins; with `temperature_steps` > 0 each trains that many steps, the best validation score by then
    picks one, and that run alone continues where it stopped (BENCHMARKS.md, "Quality by dim": which
    temperatures each objective wants; "Training speed": the short search, not yet validated as a default). The stage is kept
    only when validation says it beats its start beyond noise at every dim, and it takes `min_validation`
    validation queries to say so (BENCHMARKS.md, "Few labels").
    The stage starts from the stage-one adaptor, widened to `hidden_dim` hidden units when that is wider
    (the same `f`: new units start with zero outgoing weights).
    """

    objective: SupervisedObjective = "multi-positive"
    self_distillation: float = 1.0
    regularization: float = 1.0
    temperature: float | tuple[float, ...] = (0.05, 0.07)  # several: validation picks one
    temperature_steps: int = 0  # > 0: each temperature trains this many steps, then the pick continues alone
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
    min_validation: int = 10  # fewer validation queries than this cannot validate the stage: it is dropped
    validate_stage: bool = True  # False: the trained stage is kept whatever validation says (still recorded)
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
        self.optimiser  # noqa: B018 - made to check lr, max_steps, eval_every and patience
        for name, minimum in (
            ("batch_size", 1),
            ("temperature_steps", 0),
            ("hidden_dim", 0),
            ("hard_negatives", 0),
            ("random_negatives", 0),
        ):
            check_int(name, getattr(self, name), minimum)
        check_int("max_positives", self.max_positives, 1)
        check_int("max_candidates", self.max_candidates, 1)
        check_int("min_validation", self.min_validation, 1)
        check_int("seed", self.seed, 0)
        check_number("validation_fraction", self.validation_fraction, 0, 1)
        check_bool("refit", self.refit)
        check_bool("validate_stage", self.validate_stage)

    @property
    def optimiser(self) -> OptimiserConfig:
        """The optimisation loop's settings."""
        return OptimiserConfig(self.lr, self.max_steps, self.eval_every, self.patience)

    @property
    def temperatures(self) -> tuple[float, ...]:
        """The softmax temperatures to try, as floats (the pairwise objective uses none: its first)."""
        given = self.temperature
        temperatures = tuple(float(t) for t in (given if isinstance(given, tuple) else (given,)))
        return temperatures[:1] if self.objective == "pairwise" else temperatures


StageConfig = TypeVar("StageConfig", UnsupervisedConfig, SupervisedConfig)


def training_configs(
    unsupervised: UnsupervisedConfig | None = None,
    supervised: SupervisedConfig | None = None,
    **settings: Any,
) -> tuple[UnsupervisedConfig, SupervisedConfig]:
    """Both stages' configs with ``settings`` (e.g. ``max_steps=30``) applied to every config that has them.

    Unknown setting names raise InputError.
    """
    unsupervised, supervised = unsupervised or UnsupervisedConfig(), supervised or SupervisedConfig()
    unknown = sorted(set(settings) - _field_names(unsupervised) - _field_names(supervised))
    if unknown:
        raise InputError(
            f"unknown training setting(s) {unknown}: use fields of UnsupervisedConfig or SupervisedConfig"
        )
    return _with_settings(unsupervised, settings), _with_settings(supervised, settings)


def _field_names(config: UnsupervisedConfig | SupervisedConfig) -> set[str]:
    return {field.name for field in fields(config)}


def _with_settings(config: StageConfig, settings: Mapping[str, Any]) -> StageConfig:
    """`config` with those of `settings` that are its fields."""
    names = _field_names(config)
    return replace(config, **{key: value for key, value in settings.items() if key in names})
