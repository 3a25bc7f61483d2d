"""What `metadata["training"]` records of a training call (saved in the adaptor's `config.json`), built here for
every path: stage one alone (`unsupervised_record`), and a supervised stage kept or dropped
(`supervised_record`). Its `mode` names the adaptor returned: "supervised" only when the supervised stage was
kept; a dropped stage returns stage one's adaptor, recorded as "unsupervised", its attempt (`supervised`, the
settings at the chosen temperature) and verdict (`supervised_stage`) kept beside."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

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
    optimisation loop; `time.perf_counter` values), corpus size, the neighbour table's info and, under data
    parallelism, `distributed` (world size, backend, whether every rank holds the same weights)."""
    now = time.perf_counter()
    record: dict[str, object] = {
        "mode": "unsupervised",
        "unsupervised": asdict(config),
        "device": device,
        "seconds": now - started,
        "loop_seconds": now - loop_started,
        "corpus_size": corpus_size,
        "neighbours": neighbours,
    }
    if distributed is not None:
        record["distributed"] = distributed
    return record


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
    run: SupervisedRun, config: SupervisedConfig, kept: bool, reason: str, refit: dict[str, int] | None
) -> dict[str, object]:
    """The record of a supervised training call: `run`, the supervised settings `config` (at the chosen
    temperature once validation ran), the seconds since `run.started`, the refit's `{steps, queries}` (None
    without one) and the verdict (`supervised_stage`: kept, and why)."""
    return {
        "mode": "supervised" if kept else "unsupervised",
        "supervised": asdict(config),
        "unsupervised": asdict(run.unsupervised),
        "device": run.device,
        "corpus_size": run.corpus_size,
        "train_queries": run.train_queries,
        "stage_one": run.stage_one,
        "seconds": time.perf_counter() - run.started,
        "refit": refit,
        "supervised_stage": {"kept": kept, "reason": reason},
    }
