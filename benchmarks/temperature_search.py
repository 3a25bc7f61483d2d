"""Which softmax temperature the short search (`SupervisedConfig.temperature_steps`) picks against the whole
runs' search, on validation only, and what each supervised stage costs in wall-clock seconds.

    PYTHONPATH=. .venv/bin/python benchmarks/temperature_search.py --dataset nfcorpus
    PYTHONPATH=. .venv/bin/python benchmarks/temperature_search.py --dataset scifact --seed 1 --steps 0 --no-refit
    PYTHONPATH=. .venv/bin/python benchmarks/temperature_search.py --dataset scifact --seed 1 --steps 0 \
        --max-steps 200 --no-refit   # each temperature's first 200 steps: the short search's scores

Trains one default stage one, then from it one default supervised stage per `--steps` value (0: each
temperature's whole early-stopped run), with the dataset's dev qrels as the validation split when it has them
(else the default held-out share of the training queries), both stages seeded `--seed`. Prints one JSON line per
value: the chosen temperature, each temperature's best validation nDCG@10 within the search, the chosen run's
validation nDCG@10 and the stage's `seconds_by_phase`. `--max-steps` and `--no-refit` change those two settings
(the refit comes after the pick and does not change it). Uses the precomputed all-MiniLM-L6-v2 vectors in
../shared; reads no test label.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from matryoshka_rag.data.beir import load_beir, load_precomputed
from matryoshka_rag.evaluation.beir_eval import labelled_queries
from matryoshka_rag.training.config import SupervisedConfig, UnsupervisedConfig
from matryoshka_rag.training.supervised import train_supervised
from matryoshka_rag.training.unsupervised import unsupervised_stage

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="nfcorpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", default="0,200", help="temperature_steps values, comma-separated")
    parser.add_argument("--max-steps", type=int, default=SupervisedConfig.max_steps)
    parser.add_argument(
        "--no-refit", action="store_true", help="skip the refit (it does not change the pick)"
    )
    parser.add_argument("--shared", type=Path, default=SHARED)
    args = parser.parse_args()
    dataset = load_beir(args.shared / "beir" / args.dataset)
    corpus, queries = load_precomputed(
        args.shared / "embeddings" / "all-MiniLM-L6-v2" / args.dataset, dataset
    )
    train = labelled_queries(dataset, queries, dataset.qrels("train"))
    validation = (
        labelled_queries(dataset, queries, dataset.qrels("dev")) if "dev" in dataset.splits() else None
    )
    assert train is not None
    unsupervised = replace(UnsupervisedConfig(), seed=args.seed)
    stage_one, table = unsupervised_stage(corpus, None, unsupervised, progress=False)
    print(json.dumps({"stage_one_seconds_by_phase": stage_one.metadata["training"]["seconds_by_phase"]}))
    for steps in (int(part) for part in args.steps.split(",")):
        config = replace(
            SupervisedConfig(),
            seed=args.seed,
            temperature_steps=steps,
            max_steps=args.max_steps,
            refit=not args.no_refit,
        )
        adaptor = train_supervised(
            corpus,
            *train,
            None,
            config,
            unsupervised,
            stage_one,
            validation,
            progress=False,
            stage_one_table=table,
        )
        training, metrics = adaptor.metadata["training"], adaptor.metadata["metrics"]
        row = {
            "dataset": args.dataset,
            "seed": args.seed,
            "validation": "dev qrels" if validation else "held-out share of train",
            "temperature_steps": steps,
            "max_steps": args.max_steps,
            "chosen": training["supervised"]["temperature"],
            "by_temperature": metrics["validation_ndcg@10_by_temperature"],
            "validation_ndcg@10": metrics["validation_ndcg@10"],
            "kept": training["supervised_stage"]["kept"],
            "refit": training["refit"],
            "seconds_by_phase": training["seconds_by_phase"],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
