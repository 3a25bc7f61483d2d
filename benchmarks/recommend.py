"""Issue 17 checked against labels: the prefix served per dim (part 0) and the label-free dim estimate (part 1).

    .venv/bin/python benchmarks/recommend.py --adaptors runs/issue17 [--train]

For each set (all-MiniLM-L6-v2 vectors, exact cosine search, nDCG@10 by `evaluation.score_dims`):
- part 0: nDCG@10 per dim of the unsupervised adaptor as served (`transform`, the per-dim choice), of its
  adapted prefix at every dim (what it served before the choice), of the PCA rotation's prefix and of the base
  at the full dim, on validation (NFCorpus dev; SciFact has no dev split: its train queries) and test;
- part 1: per dim, the estimate recorded at training (held-out corpus items) and one measured on the whole
  corpus (500 random items as queries), against the labelled ratio nDCG@10(dim) / nDCG@10(full dim) of the
  served vectors, at every dim of the estimate's grid; Spearman and Kendall over dims; the recommended dim (among
  the grid, and among the trained dims as the store's `small_dim="auto"` chooses) at each target and its labelled ratio;
  beside it, recall@10 of each served prefix's search against the full dim's on the same held-out items (the
  agreement `CALIBRATION.md` measured), the estimate it was compared with.
`--train` trains the adaptors first (`train_unsupervised` defaults, one thread), into `--adaptors/<dataset>`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from matryoshka_rag.data.beir import load_beir, load_precomputed
from matryoshka_rag.evaluation.beir_eval import score_dims
from matryoshka_rag.scoring.kept import prefix_rankings
from matryoshka_rag.scoring.recommend import DimEstimate, estimate_dims, recommended
from matryoshka_rag.training import UnsupervisedConfig
from matryoshka_rag.training.unsupervised_objective import holdout_split

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EMBEDDINGS = SHARED / "embeddings" / "all-MiniLM-L6-v2"
MODEL = "all-MiniLM-L6-v2"


def train(name: str, folder: Path) -> None:
    import torch

    from matryoshka_rag import save_adaptor, train_unsupervised

    torch.set_num_threads(1)
    data = load_beir(SHARED / "beir" / name)
    docs, _ = load_precomputed(EMBEDDINGS / name, data)
    save_adaptor(train_unsupervised(docs, base_model=MODEL, progress=False), folder, overwrite=True)


def ndcg(data, docs, queries, qrels, dim: int) -> float:
    return score_dims(data, docs, queries, qrels, [dim])["ndcg@10"][dim]


def overlap(ranked: np.ndarray, reference: np.ndarray) -> float:
    """Mean share of each row's reference top k found in its ranked top k: `(q, k)`, `(q, k)` -> float."""
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(ranked, reference)]))


def evaluate_set(name: str, folder: Path, targets: list[float]) -> dict:
    data = load_beir(SHARED / "beir" / name)
    docs, queries = load_precomputed(EMBEDDINGS / name, data)
    adaptor = NumpyAdaptor.from_folder(folder)
    dims = [d for d, _ in adaptor.config.served_prefixes]
    splits = {
        "validation": data.qrels("dev" if "dev" in data.splits() else "train"),
        "test": data.qrels("test"),
    }
    variants = {
        "served": lambda x, d: adaptor.transform(x, d),
        "adapted": lambda x, d: adaptor.forward(x)[:, :d].astype(np.float32),
        "rotation": lambda x, d: adaptor.rotate(x)[:, :d].astype(np.float32),
    }
    scores = {
        split: {
            variant: {d: ndcg(data, make(docs, d), make(queries, d), qrels, d) for d in dims}
            for variant, make in variants.items()
        }
        | {"base": ndcg(data, docs, queries, qrels, adaptor.config.base_dim)}
        for split, qrels in splits.items()
    }
    recorded = estimate_dims(adaptor)
    measured = estimate_dims(adaptor, docs)
    grid = [row.dim for row in recorded]
    # the alternative estimate, for comparison: recall@10 of the served prefix's search against the served full
    # dim's, on the training's held-out items (the recorded estimate's queries)
    held_out = holdout_split(len(docs), UnsupervisedConfig())[0]
    full = (adaptor.config.served_prefix(dims[-1]), dims[-1])
    served = [(row.served, row.dim) for row in recorded]
    rankings = prefix_rankings(adaptor, docs, held_out, [*served, full])
    recall = [
        DimEstimate(row.dim, row.served, overlap(rankings[row.served, row.dim], rankings[full]), row.trained)
        for row in recorded
    ]
    served_ndcg = {
        split: {
            d: ndcg(data, adaptor.transform(docs, d), adaptor.transform(queries, d), qrels, d) for d in grid
        }
        for split, qrels in splits.items()
    }
    ratio = {
        split: {d: served_ndcg[split][d] / served_ndcg[split][grid[-1]] for d in grid} for split in splits
    }
    result = {
        "dims": dims,
        "grid": grid,
        "served": dict(adaptor.config.served_prefixes),
        "ndcg": scores,
        "estimate_recorded": {row.dim: row.kept for row in recorded},
        "estimate_measured": {row.dim: row.kept for row in measured},
        "recall_at_10": {row.dim: row.kept for row in recall},
        "ratio": ratio,
        "rank_agreement": {},
        "recommended": {},
    }
    for source, rows in (("recorded", recorded), ("measured", measured), ("recall@10", recall)):
        for split in splits:
            estimate, labelled = [r.kept for r in rows], [ratio[split][d] for d in grid]
            result["rank_agreement"][f"{source}/{split}"] = {
                "spearman": float(spearmanr(estimate, labelled).statistic),
                "kendall": float(kendalltau(estimate, labelled).statistic),
            }
        for target in targets:
            for among, trained_only in (("grid", False), ("trained dims", True)):
                dim = recommended(rows, target, trained_only=trained_only)
                result["recommended"][f"{source}/{target}/{among}"] = {
                    "dim": dim,
                    **{f"ratio_{split}": ratio[split][dim] for split in splits},
                }
    return result


def print_tables(name: str, r: dict) -> None:
    served = r["served"]
    print(f"\n### {name}: nDCG@10 by dim (validation / test)\n")
    print("| dim | served | adaptor as served | adapted prefix | PCA rotation |\n|---|---|---|---|---|")
    for d in r["dims"]:
        cells = [
            " / ".join(f"{r['ndcg'][s][v][d]:.4f}" for s in ("validation", "test"))
            for v in ("served", "adapted", "rotation")
        ]
        print(f"| {d} | {served[d]} | " + " | ".join(cells) + " |")
    print(
        "| base (full dim) | | "
        + " / ".join(f"{r['ndcg'][s]['base']:.4f}" for s in ("validation", "test"))
        + " | | |"
    )
    print(f"\n### {name}: label-free estimate vs labelled nDCG@10 ratio\n")
    print(
        "| dim | estimate (recorded, held-out) | estimate (measured, corpus) | recall@10 agreement (held-out) "
        "| ratio validation | ratio test |"
    )
    print("|---|---|---|---|---|---|")
    for d in r["grid"]:
        print(
            f"| {d}{' (trained)' if d in r['dims'] else ''} | {r['estimate_recorded'][d]:.4f} | {r['estimate_measured'][d]:.4f} | "
            f"{r['recall_at_10'][d]:.4f} | {r['ratio']['validation'][d]:.4f} | {r['ratio']['test'][d]:.4f} |"
        )
    print()
    for key, value in r["rank_agreement"].items():
        print(f"- rank agreement {key}: Spearman {value['spearman']:.3f}, Kendall {value['kendall']:.3f}")
    for key, value in r["recommended"].items():
        print(
            f"- recommended {key}: dim {value['dim']}, labelled ratio validation {value['ratio_validation']:.4f}, "
            f"test {value['ratio_test']:.4f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--adaptors", type=Path, default=Path("runs/issue17"))
    parser.add_argument("--targets", default="0.99,0.95")
    parser.add_argument("--train", action="store_true", help="train the adaptors first")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    results = {}
    for name in args.datasets.split(","):
        if args.train:
            train(name, args.adaptors / name)
        results[name] = evaluate_set(name, args.adaptors / name, targets)
        print_tables(name, results[name])
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
