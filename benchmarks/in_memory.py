"""In-memory store latency (issue 25, item 4): `MatryoshkaStore` on an in-memory Chroma against plain in-memory
384-d collections, side by side in one process, on SciFact's real all-MiniLM-L6-v2 vectors and test queries.

    .venv/bin/python benchmarks/in_memory.py --serve 2000 --append BENCHMARKS.md

Systems, all in the process's one `chromadb.EphemeralClient` database (an in-memory database lives in its
process, so every system is timed in this one):
- `store (memory)`: `MatryoshkaStore` with its defaults (`rerank_home="auto"`): the 64-d searched collection,
  the rerank rows and records in process memory; one Chroma call a query.
- `store (collection)`: `rerank_home="collection"`, the layout an in-memory store had before: a second 384-d
  collection of rerank vectors, read by id (two Chroma calls a query).
- `plain (same HNSW)`: one 384-d collection of the unit base vectors and documents, cosine space and the
  store's HNSW settings (`DEFAULT_HNSW`).
- `plain (defaults)`: the same collection as a user makes it, `create_collection(name, embedding_function=None)`
  (Chroma's default l2 space and HNSW settings).

Every system answers each query with ids, documents and metadata (plain: `query`'s default include). The
adaptor is trained without labels on SciFact's corpus (`--adaptors/scifact`, trained when missing, as
`retriever.py` does). After `--warmup` untimed queries each, every query is asked of all systems in turn, the
order rotating, so that the machine's load hits every system alike; median and p95 per query, `x plain` is
the ratio to `plain (same HNSW)`. R@10 vs exact: recall of the exact top 10 of the base vectors.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import chromadb
import numpy as np
from retriever import EMBEDDINGS, SHARED, K, adaptor_for, exact_top, ratios, recall, table, unit

from matryoshka_rag.data.beir import load_beir, load_precomputed
from matryoshka_rag.store.store import DEFAULT_HNSW, MatryoshkaStore, QueryStats

BASELINE = "plain (same HNSW)"
Query = Callable[[np.ndarray], list[str]]  # a base vector (384,) -> the ids of its top K


def _store(adaptor: Path, ids: list[str], texts: list[str], vectors: np.ndarray, home: str):
    store = MatryoshkaStore(f"store-{home}", adaptor, client=chromadb.EphemeralClient(), rerank_home=home)
    store.add(ids, texts=texts, embeddings=vectors)
    return (lambda vector: [hit.id for hit in store.query(vector, k=K)]), store.stats


def _plain(name: str, configuration: dict | None, ids: list[str], texts: list[str], vectors: np.ndarray):
    client = chromadb.EphemeralClient()
    collection = client.create_collection(name, configuration=configuration, embedding_function=None)
    size = client.get_max_batch_size()
    for start in range(0, len(ids), size):
        part = slice(start, start + size)
        collection.add(ids=ids[part], embeddings=unit(vectors[part]), documents=texts[part])

    def query(vector: np.ndarray) -> list[str]:  # documents, metadatas and distances: query's defaults
        return collection.query(query_embeddings=unit(vector[None]), n_results=K)["ids"][0]

    return query, None


def systems(adaptor: Path, ids: list[str], texts: list[str], vectors: np.ndarray) -> dict:
    """Name -> (query, the store's `QueryStats` or None), each filled with the corpus."""
    same_hnsw = {"hnsw": {"space": "cosine", **DEFAULT_HNSW}}
    return {
        "store (memory)": _store(adaptor, ids, texts, vectors, "memory"),
        "store (collection)": _store(adaptor, ids, texts, vectors, "collection"),
        BASELINE: _plain("plain-same-hnsw", same_hnsw, ids, texts, vectors),
        "plain (defaults)": _plain("plain-defaults", None, ids, texts, vectors),
    }


def timed(opened: dict[str, Query], queries: np.ndarray, serve: int, warmup: int) -> dict:
    """Seconds per query and the first answers of each system: `serve` queries (the test queries cycled),
    each asked of every system in turn, starting with a different system each time."""
    for query in opened.values():
        for vector in queries[:warmup]:
            query(vector)
    names = list(opened)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    ranked: dict[str, list[list[str]]] = {name: [] for name in names}
    for i in range(max(serve, len(queries))):
        vector = queries[i % len(queries)]
        for name in names[i % len(names) :] + names[: i % len(names)]:
            started = time.perf_counter()
            found = opened[name](vector)
            seconds[name].append(time.perf_counter() - started)
            if i < len(queries):
                ranked[name].append(found)
    return {"seconds": seconds, "ranked": ranked}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--serve", type=int, default=2000, help="timed queries per system")
    parser.add_argument("--warmup", type=int, default=50, help="untimed queries per system first")
    parser.add_argument("--adaptors", type=Path, default=Path("runs/retriever/adaptors"))
    parser.add_argument("--append", type=Path, help="append the table and the command to this markdown file")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    data = load_beir(SHARED / "beir" / "scifact")
    corpus, all_queries = load_precomputed(EMBEDDINGS / "scifact", data)
    qrels = data.qrels("test")
    queries = all_queries[[i for i, q in enumerate(data.query_ids) if q in qrels]]
    adaptor = adaptor_for("scifact", corpus, args.adaptors)
    print(f"SciFact: {len(corpus)} documents, {len(queries)} test queries; filling the systems", flush=True)
    opened = systems(adaptor, data.corpus_ids, data.corpus_texts, corpus)
    result = timed({name: query for name, (query, _) in opened.items()}, queries, args.serve, args.warmup)
    exact = exact_top(corpus, queries, data.corpus_ids)
    report = {}
    for name, (_, stats) in opened.items():
        ms = 1000 * np.asarray(result["seconds"][name])
        report[name] = {
            "recall@10 vs exact": recall(result["ranked"][name], exact),
            "median_ms": float(np.median(ms)),
            "p95_ms": float(np.percentile(ms, 95)),
        }
        if isinstance(stats, QueryStats):
            report[name]["widened"] = stats.widened / stats.queries
    ratios(report, BASELINE)
    text = table(report)
    print(text, flush=True)
    if args.append:
        command = "python benchmarks/in_memory.py " + shlex.join(sys.argv[1:])
        header = (
            f"`{command}` ({os.cpu_count()} cores shared with other jobs, load average {load:.1f} at start, "
            f"{time.strftime('%Y-%m-%d')}; {len(corpus)} documents, {len(queries)} test queries cycled to "
            f"{max(args.serve, len(queries))} per system; ratios from this one run)"
        )
        with open(args.append, "a") as out:
            out.write("\n" + header + "\n\n" + text + "\n")


if __name__ == "__main__":
    main()
