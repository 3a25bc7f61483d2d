"""Supervision without (many) labels (issue 17, parts 2 and 3), on the precomputed all-MiniLM-L6-v2 vectors.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pseudo_labels.py encode --dataset scifact
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pseudo_labels.py pseudo --dataset scifact
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pseudo_labels.py few --dataset scifact \
        --fractions 0.1,0.25,0.5,1.0 --seeds 0,1,2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pseudo_labels.py mix --dataset scifact --fractions 0.1
    .venv/bin/python benchmarks/pseudo_labels.py curve --dataset scifact --tags 10-perdim,25-100-s0,25-100-s12

- `encode`: one pseudo-query per document (`matryoshka_rag.data.pseudo_queries`: its title or an inverse-cloze
  sentence), embedded once with the base model through an on-disk cache -> runs/pseudo/<set>/pseudo_queries.json
  (texts, rows, kinds, counts, seconds) and pseudo_vectors.npy.
- `pseudo`: the supervised stage trained on the pseudo-queries alone, early-stopped label-free (validation
  nDCG@10 on held-out pseudo-queries).
- `few`: the supervised stage on a random share of the training queries per seed; its validation is a split of
  that share (never the other training queries).
- `mix`: at a share of the training queries, the pseudo-queries and the real ones together: `concat` (both in
  every batch, the real ones repeated to half the training queries) and `then` (the pseudo adaptor as the
  start, then the real ones); validation is the real share's split.
- `curve`: a table of recorded `few` runs (`--tags`): per share, the mean over seeds per dim, how many runs
  kept the stage, and the largest fall below the unsupervised adaptor at any dim.

Every mode starts from one unsupervised adaptor per set (trained once, saved in runs/pseudo/<set>/unsupervised)
and writes runs/pseudo/<set>/<mode>[-<tag>].json: test nDCG@10 per dim of base, PCA rotation, unsupervised and the
runs, with each run's validation choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from matryoshka_rag.adaptor.pca import principal_axes
from matryoshka_rag.adaptor.persistence import load_adaptor, save_adaptor
from matryoshka_rag.data.beir import BeirDataset, load_beir, load_precomputed, read_corpus_fields
from matryoshka_rag.data.pseudo_queries import pseudo_queries
from matryoshka_rag.evaluation.beir_eval import labelled_queries, score_dims
from matryoshka_rag.scoring.paired import clearly_above
from matryoshka_rag.training import SupervisedConfig, split_validation, train_supervised, train_unsupervised

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RUNS = Path("runs/pseudo")
MODEL = "all-MiniLM-L6-v2"
DIMS = (16, 32, 64, 128, 256, 384)


def encode(dataset: str, shared: Path, out: Path) -> dict:
    """Pseudo-queries of `dataset` and their base vectors (one encoding, through the cache)."""
    from matryoshka_rag.embeddings.cache import EmbeddingCache
    from matryoshka_rag.embeddings.providers import SentenceTransformerProvider, embed_texts

    _, titles, bodies = read_corpus_fields(shared / "beir" / dataset / "corpus.jsonl")
    queries = pseudo_queries(bodies, titles)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with EmbeddingCache(RUNS / "cache.sqlite") as cache:
        vectors = embed_texts(SentenceTransformerProvider(MODEL), queries.texts, cache)
    seconds = time.perf_counter() - started
    np.save(out / "pseudo_vectors.npy", vectors)
    record = {
        "dataset": dataset,
        "counts": queries.counts(),
        "encode_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "texts": queries.texts,
        "doc_rows": queries.doc_rows,
        "kinds": queries.kinds,
        "no_sentence": queries.no_sentence,
        "skipped": queries.skipped,
    }
    (out / "pseudo_queries.json").write_text(json.dumps(record) + "\n")
    return record


@dataclasses.dataclass
class Setting:
    """One set's data: BEIR folder, base vectors, training qrels as rows, the shared unsupervised adaptor."""

    dataset: BeirDataset
    corpus: np.ndarray
    queries: np.ndarray
    train: tuple[np.ndarray, list[dict[int, float]]]
    dev: tuple[np.ndarray, list[dict[int, float]]] | None
    out: Path

    def unsupervised(self):
        """The set's unsupervised adaptor (default settings, seed 0), trained once and saved."""
        folder = self.out / "unsupervised"
        if not folder.is_dir():
            adaptor = train_unsupervised(self.corpus, DIMS, base_model=MODEL, progress=False)
            save_adaptor(adaptor, folder)
        return load_adaptor(folder)

    def pseudo(self) -> tuple[np.ndarray, list[dict[int, float]], dict]:
        """Pseudo-query vectors, their relevance and the encoding record (`encode` first)."""
        record = json.loads((self.out / "pseudo_queries.json").read_text())
        return np.load(self.out / "pseudo_vectors.npy"), [{r: 1.0} for r in record["doc_rows"]], record

    def test(self, transform) -> dict[str, float]:
        """Test nDCG@10 per dim of `transform` (base vectors (n, dim) -> the method's)."""
        scores = score_dims(
            self.dataset, transform(self.corpus), transform(self.queries), self.dataset.qrels("test"), DIMS
        )
        return {str(m): round(v, 4) for m, v in scores["ndcg@10"].items()}


def load_setting(name: str, shared: Path) -> Setting:
    dataset = load_beir(shared / "beir" / name)
    corpus, queries = load_precomputed(shared / "embeddings" / MODEL / name, dataset)
    splits = dataset.splits()
    train = labelled_queries(dataset, queries, dataset.qrels("train"))
    dev = labelled_queries(dataset, queries, dataset.qrels("dev")) if "dev" in splits else None
    out = RUNS / name
    out.mkdir(parents=True, exist_ok=True)
    return Setting(dataset, corpus, queries, train, dev, out)


def baselines(setting: Setting, unsupervised) -> dict[str, dict[str, float]]:
    """Test nDCG@10 per dim of the base (truncation), the PCA rotation and the unsupervised adaptor."""
    _, axes = principal_axes(setting.corpus)
    return {
        "base": setting.test(lambda x: x),
        "pca-rotation": setting.test(lambda x: x @ axes),
        "unsupervised": setting.test(unsupervised.transform),
    }


def run_record(setting: Setting, adaptor, started: float, **extra) -> dict:
    """Test nDCG@10 per dim of a trained adaptor, and what validation chose."""
    training, metrics = adaptor.metadata["training"], adaptor.metadata["metrics"]
    return {
        **extra,
        "test_ndcg@10": setting.test(adaptor.transform),
        "kept": training["supervised_stage"]["kept"],
        "reason": training["supervised_stage"]["reason"],
        "temperature": training["supervised"]["temperature"],
        "best_step": metrics.get("best_step"),
        "steps": metrics.get("steps"),
        "validation_ndcg@10": metrics.get("validation_ndcg@10"),
        "validation_ndcg@10_by_dim": metrics.get("validation_ndcg@10_by_dim"),
        "validation_ndcg@10_by_temperature": metrics.get("validation_ndcg@10_by_temperature"),
        "train_queries": training["train_queries"],
        "seconds": round(time.perf_counter() - started, 1),
    }


def share(train: tuple[np.ndarray, list], fraction: float, seed: int) -> tuple[np.ndarray, list]:
    """A seeded random `fraction` of the labelled training queries."""
    order = np.random.default_rng(seed).permutation(len(train[1]))[: max(1, round(fraction * len(train[1])))]
    rows = sorted(order.tolist())
    return train[0][rows], [train[1][i] for i in rows]


def supervised(setting: Setting, config: SupervisedConfig, start, queries, relevance, validation=None):
    return train_supervised(
        setting.corpus,
        queries,
        relevance,
        DIMS,
        config,
        adaptor=start,
        validation=validation,
        base_model=MODEL,
        progress=True,
    )


def kept_now(run: dict) -> bool:
    """Whether today's `stage_verdict` keeps a recorded run's stage, read back from its recorded validation
    means and standard errors per dim (runs recorded under a laxer rule may be dropped now)."""
    by_dim = run["validation_ndcg@10_by_dim"]
    start, trained, error = by_dim["start"], by_dim["trained"], by_dim["standard_error"]
    return run["kept"] and all(clearly_above(trained[m] - start[m], error[m]) for m in start)


def curve(dataset: str, tags: list[str]) -> str:
    """Markdown: per share of the training queries, test nDCG@10 per dim averaged over the recorded seeds of
    `few-<tag>.json` as the product returns them today (a run `kept_now` drops returns the unsupervised
    adaptor), the runs kept, and the largest fall below the unsupervised adaptor at any dim."""
    records = [json.loads((RUNS / dataset / f"few-{tag}.json").read_text()) for tag in tags]
    unsupervised = records[0]["baselines"]["unsupervised"]
    runs = [
        run if kept_now(run) else run | {"kept": False, "test_ndcg@10": unsupervised}
        for record in records
        for run in record["runs"]
    ]
    lines = [
        f"| {dataset}: share of training queries | seeds | "
        + " | ".join(str(d) for d in DIMS)
        + " | kept | largest fall below unsupervised |",
        "|---|---|" + "---|" * len(DIMS) + "---|---|",
        "| 0 (unsupervised) | | " + " | ".join(f"{unsupervised[str(d)]:.3f}" for d in DIMS) + " | | |",
    ]
    for fraction in sorted({run["fraction"] for run in runs}):
        chosen = sorted((r for r in runs if r["fraction"] == fraction), key=lambda r: r["seed"])
        means = [np.mean([r["test_ndcg@10"][str(d)] for r in chosen]) for d in DIMS]
        fall = max(unsupervised[str(d)] - r["test_ndcg@10"][str(d)] for r in chosen for d in DIMS)
        lines.append(
            f"| {fraction:.0%} | {','.join(str(r['seed']) for r in chosen)} | "
            + " | ".join(f"{m:.3f}" for m in means)
            + f" | {sum(r['kept'] for r in chosen)} of {len(chosen)} | {max(fall, 0.0):.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["encode", "pseudo", "few", "mix", "curve"])
    parser.add_argument("--dataset", default="scifact")
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--fractions", default="0.1,0.25,0.5,1.0")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-steps", type=int, default=600)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--temperature", default="0.05", help="one or several (comma): validation picks")
    parser.add_argument("--lr", type=float, default=SupervisedConfig.lr)
    parser.add_argument("--regularization", type=float, default=SupervisedConfig.regularization)
    parser.add_argument("--no-refit", action="store_true")
    parser.add_argument(
        "--unvalidated",
        action="store_true",
        help="keep the trained stage whatever validation says (the verdict is still recorded)",
    )
    parser.add_argument("--variants", default="then,concat", help="mix: which mixes to run")
    parser.add_argument("--tag", default="", help="suffix of the output file: <mode>-<tag>.json")
    parser.add_argument("--tags", default="", help="curve: the few-<tag>.json files to summarise (comma)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.mode == "curve":
        print(curve(args.dataset, args.tags.split(",")))
        return
    if args.mode == "encode":
        record = encode(args.dataset, args.shared, RUNS / args.dataset)
        print(json.dumps({k: record[k] for k in ("dataset", "counts", "encode_seconds", "threads")}))
        return
    setting = load_setting(args.dataset, args.shared)
    config = SupervisedConfig(
        temperature=tuple(float(t) for t in args.temperature.split(",")),
        max_steps=args.max_steps,
        lr=args.lr,
        regularization=args.regularization,
        eval_every=args.eval_every,
        patience=args.patience,
        refit=not args.no_refit,
        validate_stage=not args.unvalidated,
    )
    unsupervised = setting.unsupervised()
    results = {
        "dataset": args.dataset,
        "mode": args.mode,
        "config": dataclasses.asdict(config),
        "dims": list(DIMS),
        "baselines": baselines(setting, unsupervised),
        "runs": [],
    }
    fractions = [float(f) for f in args.fractions.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = setting.out / f"{args.mode}{'-' + args.tag if args.tag else ''}.json"
    if args.mode in ("pseudo", "mix"):
        pseudo_vectors, pseudo_relevance, record = setting.pseudo()
        results["pseudo_counts"], results["encode_seconds"] = record["counts"], record["encode_seconds"]
    if args.mode == "pseudo":
        started = time.perf_counter()
        adaptor = supervised(setting, config, unsupervised, pseudo_vectors, pseudo_relevance)
        save_adaptor(
            adaptor, setting.out / f"pseudo_adaptor{'-' + args.tag if args.tag else ''}", overwrite=True
        )
        results["runs"].append(run_record(setting, adaptor, started, name="pseudo"))
    for fraction in fractions if args.mode in ("few", "mix") else []:
        for seed in seeds:
            seeded = dataclasses.replace(config, seed=seed)
            queries, relevance = share(setting.train, fraction, seed)
            if args.mode == "few":
                started = time.perf_counter()
                adaptor = supervised(setting, seeded, unsupervised, queries, relevance)
                results["runs"].append(run_record(setting, adaptor, started, fraction=fraction, seed=seed))
            else:
                rows = split_validation(len(queries), config.validation_fraction, seed, config.min_validation)
                real = (queries[rows[0]], [relevance[i] for i in rows[0]])
                held = (queries[rows[1]], [relevance[i] for i in rows[1]])
                for variant in args.variants.split(","):
                    started = time.perf_counter()
                    if variant == "concat":
                        repeat = max(1, len(pseudo_relevance) // len(real[1]))
                        adaptor = supervised(
                            setting,
                            seeded,
                            unsupervised,
                            np.concatenate([pseudo_vectors, np.repeat(real[0], repeat, axis=0)]),
                            pseudo_relevance + real[1] * repeat,
                            held,
                        )
                    else:
                        pseudo_start = load_adaptor(setting.out / "pseudo_adaptor")
                        adaptor = supervised(setting, seeded, pseudo_start, real[0], real[1], held)
                    results["runs"].append(
                        run_record(setting, adaptor, started, name=variant, fraction=fraction, seed=seed)
                    )
            out.write_text(json.dumps(results, indent=1) + "\n")
            print(json.dumps(results["runs"][-1]), flush=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: results[k] for k in ("baselines",)}), flush=True)
    for run in results["runs"]:
        print(json.dumps(run), flush=True)


if __name__ == "__main__":
    main()
