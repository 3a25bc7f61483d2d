"""CPU seconds per training step of both stages at the library's defaults, for side-by-side runs of two checkouts.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_speed.py --datasets scifact,nfcorpus
    PYTHONPATH=../base OMP_NUM_THREADS=1 .venv/bin/python benchmarks/train_speed.py ...   # the other checkout

Times `--steps` Adam steps (after one untimed step) of the unsupervised objective and of the supervised loss
(ranking at temperature 0.05 + the regulariser) from the PCA-rotation start, with `time.process_time` on one
torch thread: CPU seconds, which a machine shared with other work inflates far less than wall-clock seconds.
Also prints the last step's loss: checkouts that compute the same objective print the same value. Uses the
precomputed all-MiniLM-L6-v2 vectors in ../shared. Only the public training modules of both checkouts are used.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from matryoshka_rag.data.beir import load_beir, load_precomputed
from matryoshka_rag.evaluation.beir_eval import labelled_queries
from matryoshka_rag.training.config import SupervisedConfig, UnsupervisedConfig
from matryoshka_rag.training.ranking import RankingObjective
from matryoshka_rag.training.supervised import supervised_loss
from matryoshka_rag.training.unsupervised import new_adaptor
from matryoshka_rag.training.unsupervised_objective import neighbour_table, unsupervised_objective

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DIMS = (16, 32, 64, 128, 256, 384)
CPU = torch.device("cpu")


def seconds_per_step(
    parameters, lr: float, loss_at: Callable[[int], torch.Tensor], steps: int
) -> tuple[float, float]:
    """CPU seconds per Adam step on `loss_at(step)` over `steps` timed steps, and the last loss."""
    adam = torch.optim.Adam(parameters, lr=lr)

    def step(i: int) -> float:
        loss = loss_at(i)
        adam.zero_grad()
        loss.backward()
        adam.step()
        return loss.item()

    step(0)
    started = time.process_time()
    losses = [step(i) for i in range(1, steps + 1)]
    return (time.process_time() - started) / steps, losses[-1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    torch.set_num_threads(1)
    unsupervised, supervised = UnsupervisedConfig(), SupervisedConfig(temperature=0.05)
    for name in args.datasets.split(","):
        dataset = load_beir(args.shared / "beir" / name)
        corpus, queries = load_precomputed(args.shared / "embeddings" / "all-MiniLM-L6-v2" / name, dataset)
        vectors, relevance = labelled_queries(dataset, queries, dataset.qrels("train"))
        table, _ = neighbour_table(corpus, unsupervised, CPU)
        for stage in ("unsupervised", "supervised"):
            seconds, loss = stage_step(
                stage, corpus, vectors, relevance, table, unsupervised, supervised, args.steps
            )
            print(f"{name} {stage}: {seconds:.3f} CPU s/step, last loss {loss:.5f}", flush=True)


def stage_step(
    stage: str,
    corpus: np.ndarray,
    vectors: np.ndarray,
    relevance: list[dict[int, float]],
    table: np.ndarray,
    unsupervised: UnsupervisedConfig,
    supervised: SupervisedConfig,
    steps: int,
) -> tuple[float, float]:
    """`seconds_per_step` of `stage` ("unsupervised" or "supervised") from a fresh PCA-rotation start."""
    adaptor = new_adaptor(corpus, DIMS, unsupervised, "all-MiniLM-L6-v2")
    objective = unsupervised_objective(corpus, DIMS, unsupervised, CPU, table)
    try:
        if stage == "unsupervised":
            return seconds_per_step(
                adaptor.mlp.parameters(), unsupervised.lr, lambda i: objective.loss_at(adaptor, i), steps
            )
        ranking = RankingObjective(
            torch.from_numpy(corpus), torch.from_numpy(vectors), relevance, supervised, DIMS
        )
        return seconds_per_step(
            adaptor.mlp.parameters(),
            supervised.lr,
            lambda i: supervised_loss(ranking, objective, 1.0, adaptor, i),
            steps,
        )
    finally:
        objective.corpus.close()


if __name__ == "__main__":
    main()
