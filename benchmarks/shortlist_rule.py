"""The store's shortlist, chosen on validation: recall@10, widening rate and candidates searched by first
shortlist factor and widening step.

    .venv/bin/python benchmarks/shortlist_rule.py --factors 10,20,30,40 --steps 2,4

Simulates `MatryoshkaStore.query` with exact search: on each set's *train* queries, candidates ranked by the
adapted 64-d prefix's cosine, reranked by the base 384-d cosine, widened x step (up to 160 x k) while
`shortlist_is_conclusive` is false. Recall@10 is against exact base-vector search; "candidates" is the size
of the last shortlist (mean and 95th percentile over queries), what a query's search and reads cost grow
with. Adaptors: the unsupervised ones of `benchmarks/retriever.py` (`runs/retriever/adaptors/<dataset>`,
trained there when missing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from matryoshka_rag.data.beir import load_beir, load_precomputed
from matryoshka_rag.store.shortlist import shortlist_is_conclusive
from matryoshka_rag.store.store import WIDEN_STEP

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EMBEDDINGS = SHARED / "embeddings" / "all-MiniLM-L6-v2"
K, CAP = 10, 160


def simulate(small: np.ndarray, large: np.ndarray, factor: int, step: int) -> tuple[float, int]:
    """Recall@10 and the last shortlist's length, for one query's `(n,)` small and large cosines."""
    order = np.argsort(-small)[: K * CAP]
    truth = set(np.argsort(-large)[:K])
    n = K * factor
    while True:
        shortlist = order[:n]
        if n >= K * CAP or shortlist_is_conclusive(small[shortlist], large[shortlist], K):
            break
        n = min(n * step, K * CAP)
    found = shortlist[np.argsort(-large[shortlist])[:K]]
    return len(truth & set(found)) / K, n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", default="scifact,nfcorpus")
    parser.add_argument("--factors", default="10,20,30,40")
    parser.add_argument(
        "--steps", default=str(WIDEN_STEP), help="widening steps (the store's is the default)"
    )
    parser.add_argument("--adaptors", type=Path, default=Path("runs/retriever/adaptors"))
    args = parser.parse_args()
    print(
        "| dataset (train queries) | factor | step | recall@10 | widened | candidates mean / p95 |\n"
        "|---|---|---|---|---|---|"
    )
    for name in args.datasets.split(","):
        data = load_beir(SHARED / "beir" / name)
        docs, queries = load_precomputed(EMBEDDINGS / name, data)
        train = data.qrels("train")
        queries = queries[[i for i, q in enumerate(data.query_ids) if q in train]]
        adaptor = NumpyAdaptor.from_folder(args.adaptors / name)
        small = adaptor.transform(queries, dim=64) @ adaptor.transform(docs, dim=64).T
        unit = docs / np.linalg.norm(docs, axis=1, keepdims=True)
        large = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
        for factor in map(int, args.factors.split(",")):
            for step in map(int, args.steps.split(",")):
                results = [simulate(s, lg, factor, step) for s, lg in zip(small, large)]
                recall, lengths = np.mean([r for r, _ in results]), np.array([n for _, n in results])
                print(
                    f"| {name} | {factor} x k | x{step} | {recall:.4f} | {np.mean(lengths > K * factor):.1%} | "
                    f"{lengths.mean():.0f} / {np.percentile(lengths, 95):.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
