"""How deep a small-dim shortlist must go to hold the exact top 10, by synthetic generator and small dim.

    .venv/bin/python benchmarks/shortlist_depth.py --size 200000 --dims 64,128

For each of the scale benchmark's SciFact test queries (`benchmarks/retriever.py`, reporting only): the rank,
in the order of the served prefix's cosine (what the store's Chroma collection holds), of the last of the exact base-vector top 10 (the shortlist length
that would hold all ten), as percentiles over queries and the share of queries that 30 x k = 300 candidates
cover. Corpora: the 8,816 real vectors, then synthetic ones from two generators:
- `isotropic`: the scale benchmark's (a real vector + N(0, 0.03^2) per dim, `retriever.synthetic`);
- `corpus`: `train_scale.make_corpus` (a real vector + noise along the real PCA axes at the real per-axis
  spread, whose nearest-neighbour cosines match the real vectors').
Adaptor: the unsupervised SciFact one of `benchmarks/retriever.py`.

`--base-dim D --adaptor FOLDER` measures instead the big-base set of `retriever.py --base-dim D`
(`retriever.spectrum_synthetic`: its corpus and queries) with that run's adaptor, and also prints the mean cosine
of each query's 1st and 10th nearest neighbour:

    .venv/bin/python benchmarks/shortlist_depth.py --size 200000 --dims 64 --base-dim 1536 \
        --adaptor runs/bigbase/adaptors/synthetic-minilm-spectrum-1536-20steps
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from retriever import adaptor_for, spectrum_synthetic, synthetic, unit
from train_scale import make_corpus

from matryoshka_rag.adaptor.numpy_forward import NumpyAdaptor
from matryoshka_rag.data.beir import load_beir, load_precomputed

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
K, FIRST = 10, 300
PERCENTILES = (50, 80, 90, 95, 99)


def depths(
    corpus: np.ndarray, queries: np.ndarray, small: np.ndarray, small_queries: np.ndarray
) -> np.ndarray:
    """`(q,)` shortlist length holding each query's exact top K: `corpus (n, d)` and `small (n, m)` unit rows."""
    out = np.empty(len(queries), dtype=np.int64)
    for i, (query, small_query) in enumerate(zip(queries, small_queries)):
        exact = np.argpartition(-(corpus @ query), K)[:K]
        scores = small @ small_query
        out[i] = int((scores > scores[exact].min()).sum()) + 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--dims", default="64,128", help="small dims (trained dims of the adaptor)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--adaptors", type=Path, default=Path("runs/retriever/adaptors"))
    parser.add_argument("--out", type=Path, default=Path("runs/shortlist_depth"))
    parser.add_argument("--base-dim", type=int, default=0, help="the big-base set of this dim instead")
    parser.add_argument("--adaptor", type=Path, help="the --base-dim run's adaptor folder")
    args = parser.parse_args()
    if args.base_dim:
        big_base(args)
        return
    data = load_beir(SHARED / "beir" / "scifact")
    corpus, all_queries = load_precomputed(SHARED / "embeddings" / "all-MiniLM-L6-v2" / "scifact", data)
    qrels = data.qrels("test")
    queries = unit(all_queries[[i for i, q in enumerate(data.query_ids) if q in qrels][: args.queries]])
    adaptor = NumpyAdaptor.from_folder(adaptor_for("scifact", corpus, args.adaptors))

    def corpus_shaped() -> np.ndarray:
        path = args.out / f"corpus_{args.size}.npy"
        make_corpus(path, args.size, 1.0)  # kept: written once
        return np.load(path)

    generators = {"isotropic": lambda: synthetic(args.size, 0.03)[1], "corpus": corpus_shaped}
    print_depths(generators, queries, adaptor, args.dims)


def print_depths(generators: dict, queries: np.ndarray, adaptor: NumpyAdaptor, dims: str) -> None:
    """One Markdown row of shortlist depths per generator (name -> () -> corpus `(n, d)`) and small dim."""
    print(f"| generator | small dim | {' | '.join(f'{p}%' for p in PERCENTILES)} | <= {FIRST} |")
    print(f"|---|---|{'---|' * len(PERCENTILES)}---|")
    for name, generate in generators.items():
        vectors = unit(np.asarray(generate(), np.float32))
        for dim in (int(d) for d in dims.split(",")):
            small, small_queries = adaptor.transform(vectors, dim=dim), adaptor.transform(queries, dim=dim)
            found = depths(vectors, queries, small, small_queries)
            cells = " | ".join(f"{int(np.percentile(found, p)):,}" for p in PERCENTILES)
            print(f"| {name} | {dim} | {cells} | {(found <= FIRST).mean():.1%} |", flush=True)


def big_base(args: argparse.Namespace) -> None:
    """`print_depths` on `spectrum_synthetic(args.size, args.base_dim)` and its queries, after their mean
    1st / 10th nearest-neighbour cosines."""
    corpus = spectrum_synthetic(args.size, args.base_dim)
    queries = spectrum_synthetic(args.queries, args.base_dim, seed=1)
    nearest = np.sort(queries @ corpus.T, axis=1)[:, ::-1]
    print(
        f"nearest-neighbour cosine, 1st / 10th: {nearest[:, 0].mean():.3f} / {nearest[:, K - 1].mean():.3f}"
    )
    adaptor = NumpyAdaptor.from_folder(args.adaptor)
    print_depths({f"spectrum {args.base_dim}-d": lambda: corpus}, queries, adaptor, args.dims)


if __name__ == "__main__":
    main()
