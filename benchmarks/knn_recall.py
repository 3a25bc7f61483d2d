"""Recall of the approximate (faiss HNSW) neighbour table against exact search, by efSearch (issue 5).

    .venv/bin/python benchmarks/knn_recall.py runs/train_scale_2m/corpus_2000000_noise1.npy --ef 64,128,256,512

Builds the graph `neighbours.knn_table` builds (`neighbours.hnsw_index`: M=32, efConstruction 80) over a
`(n, dim)` `.npy` corpus (e.g. one written by `train_scale.py`), then for each efSearch searches `--sample`
rows and compares their 10 nearest other rows with exact search; the whole-table search time is extrapolated
from the sample's.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from matryoshka_rag.training.neighbours import exact_knn_rows, hnsw_index


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", help="(n, dim) float32 .npy, opened memory-mapped")
    parser.add_argument("--ef", default="64,128,256,512")
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    vectors = np.load(args.corpus, mmap_mode="r")
    n = vectors.shape[0]
    started = time.perf_counter()
    index = hnsw_index(vectors)
    print(f"N {n:,}: graph built in {time.perf_counter() - started:.1f} s", flush=True)
    rows = np.random.default_rng(1).choice(n, min(args.sample, n), replace=False)
    truth = exact_knn_rows(vectors, args.k, rows)
    queries = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    print("| efSearch | recall@10 | search s, every row (extrapolated) |\n|---|---|---|")
    for ef in (int(e) for e in args.ef.split(",")):
        index.hnsw.efSearch = ef
        started = time.perf_counter()
        found = index.search(queries, args.k + 1)[1]
        seconds = time.perf_counter() - started
        hits = [len(set(f[f != r][: args.k]) & set(t)) for f, r, t in zip(found, rows, truth)]
        print(f"| {ef} | {np.mean(hits) / args.k:.3f} | {seconds / len(rows) * n:.0f} |", flush=True)


if __name__ == "__main__":
    main()
