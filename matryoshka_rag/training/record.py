"""What `metadata["training"]` records of a training call (saved in the adaptor's `config.json`), built here for
every path: stage one alone (`unsupervised_record`), and a supervised stage kept or dropped
(`supervised_record`). Its `mode` names the adaptor returned: "supervised" only when the supervised stage was
kept; a dropped stage returns stage one's adaptor, recorded as "unsupervised", its attempt (`supervised`, the
settings at the chosen temperature) and verdict (`supervised_stage`) kept beside."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from .config import SupervisedConfig, UnsupervisedConfig


def unsupervised_record(
    config: UnsupervisedConfig,
    device: str,
    corpus_size: int,
    neighbours: dict,
    started: float,
    loop_started: float,
    distributed: dict | None,
) -> dict[str, object]:
    """Stage one's record: its settings, device, seconds since `started` and since `loop_started` (the
    optimisation loop; `time.perf_counter` values) and by phase (the neighbour table, the rest of the setup,
    the training loop), corpus size, the neighbour table's info and, under data parallelism, `distributed`
    (world size, backend, whether every rank holds the same weights)."""
    now = time.perf_counter()
    record: dict[str, object] = {
        "mode": "unsupervised",
        "unsupervised": asdict(config),
        "device": device,
        "seconds": now - started,
        "loop_seconds": now - loop_started,
        "seconds_by_phase": {
            "neighbour table": round(neighbours["seconds"], 3),
            "other setup": round(loop_started - started - neighbours["seconds"], 3),
            "training": round(now - loop_started, 3),
        },
        "corpus_size": corpus_size,
        "neighbours": neighbours,
    }
    if distributed is not None:
        record["distributed"] = distributed
    return record


@dataclass
class PhaseClock:
    """Seconds spent in each named phase of a training call, in the order the phases first ran (a phase run
    twice adds up), as `metadata["training"]["seconds_by_phase"]` records them."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block as phase `name`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        """The seconds by phase, to the millisecond."""
        return {name: round(seconds, 3) for name, seconds in self.seconds.items()}


@dataclass(frozen=True)
class SupervisedRun:
    """What a supervised training call records whatever its verdict: the stage-one settings, the device, the
    corpus size, the number of queries trained on, the stage-one adaptor's metadata, and when it started
    (`time.perf_counter`)."""

    unsupervised: UnsupervisedConfig
    device: str
    corpus_size: int
    train_queries: int
    stage_one: dict
    started: float


def supervised_record(
    run: SupervisedRun,
    config: SupervisedConfig,
    kept: bool,
    reason: str,
    refit: dict[str, int] | None,
    phases: dict[str, float],
) -> dict[str, object]:
    """The record of a supervised training call: `run`, the supervised settings `config` (at the chosen
    temperature once validation ran), the seconds since `run.started` and the supervised stage's `phases`
    (`PhaseClock.rounded`; stage one's are in its own record), the refit's `{steps, queries}` (None without
    one) and the verdict (`supervised_stage`: kept, and why)."""
    return {
        "mode": "supervised" if kept else "unsupervised",
        "supervised": asdict(config),
        "unsupervised": asdict(run.unsupervised),
        "device": run.device,
        "corpus_size": run.corpus_size,
        "train_queries": run.train_queries,
        "stage_one": run.stage_one,
        "seconds": time.perf_counter() - run.started,
        "seconds_by_phase": phases,
        "refit": refit,
        "supervised_stage": {"kept": kept, "reason": reason},
    }
