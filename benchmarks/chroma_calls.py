"""What each Chroma call of a Matryoshka funnel costs against one plain full-dim query (issue 4's latency floor).

    .venv/bin/python benchmarks/chroma_calls.py --size 200000

Two embedded databases of the same N vectors (`retriever.synthetic`: real SciFact + NFCorpus vectors, then
noisy copies), each record with a short document: `plain` (384-d base vectors, one HNSW collection) and `small`
(64-d adapted prefixes, one HNSW collection) with the 384-d base vectors in a float16 file beside it (the
leanest place for rerank vectors: no HNSW, not resident, read with `os.pread`). Same HNSW settings as the
product. Each database is opened in a fresh process; RSS is that process's growth while it opens the database
and answers; every row is the median and p95 over the same real SciFact test queries, after 5 warm-up queries.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from retriever import (
    EMBEDDINGS,
    _chunks,
    _collection,
    _unit,
    adaptor_for,
    in_fresh_process,
    rss_mib,
    synthetic,
)

SMALL_DIM = 64
ROW_BYTES = 384 * 2  # one float16 base vector in the sidecar


def ingest_job(folder: str, size: int, adaptor: str) -> dict:
    """Write both databases (and the sidecar); seconds each, and their disk MiB."""
    import chromadb

    from matryoshka_rag import load_adaptor

    ids, vectors = synthetic(size, 0.03)
    documents = [f"document {i}" for i in ids]
    small = load_adaptor(adaptor).transform(vectors, SMALL_DIM)
    report = {}
    for name, stored in (("plain", vectors), ("small", small)):
        started = time.perf_counter()
        collection = _collection(chromadb.PersistentClient(f"{folder}/{name}"), name)
        for part in _chunks(size):
            collection.upsert(ids=ids[part], embeddings=stored[part], documents=documents[part])
        if name == "small":
            vectors.astype(np.float16).tofile(f"{folder}/small/large.f16")
        report[f"{name} ingest s"] = time.perf_counter() - started
        files = Path(folder, name).rglob("*")
        report[f"{name} disk MiB"] = sum(f.stat().st_size for f in files if f.is_file()) / 2**20
    return report


def serve_job(folder: str, name: str, size: int, adaptor: str, k: int, factors: list[int], n: int) -> dict:
    """Median and p95 ms of each call on database `name`, and the serving process's RSS growth."""
    import chromadb
    import torch

    from matryoshka_rag import load_adaptor

    torch.set_num_threads(1)
    ids, _ = synthetic(size, 0.03)
    row_of = {record_id: row for row, record_id in enumerate(ids)}
    queries = np.load(EMBEDDINGS / "scifact" / "queries.npy")[:n].astype(np.float32)
    base_queries = _unit(queries)
    small_queries = load_adaptor(adaptor).transform(queries, SMALL_DIM)
    before = rss_mib()
    collection = chromadb.PersistentClient(f"{folder}/{name}").get_collection(name, embedding_function=None)

    def search(i: int, vectors: np.ndarray, n_results: int, include: list[str]) -> list[str]:
        return collection.query(query_embeddings=[vectors[i]], n_results=n_results, include=include)["ids"][0]

    calls = {}
    if name == "plain":
        calls[f"plain query n={k}, documents + metadatas (what plain users run)"] = lambda i: search(
            i, base_queries, k, ["documents", "metadatas", "distances"]
        )
        calls[f"plain query n={k}, distances only"] = lambda i: search(i, base_queries, k, ["distances"])
    else:
        sidecar = os.open(f"{folder}/small/large.f16", os.O_RDONLY)

        def rerank_vectors(rows: list[int]) -> np.ndarray:
            read = b"".join(os.pread(sidecar, ROW_BYTES, ROW_BYTES * row) for row in rows)
            return np.frombuffer(read, np.float16).reshape(len(rows), -1).astype(np.float32)

        def funnel(i: int, factor: int) -> None:
            shortlist = search(i, small_queries, factor * k, ["distances"])
            stored = rerank_vectors([row_of[record_id] for record_id in shortlist])
            best = np.argsort(-(stored @ base_queries[i]))[:k]
            collection.get(ids=[shortlist[j] for j in best], include=["documents", "metadatas"])

        for factor in factors:
            calls[f"small query n={factor * k}, distances only"] = lambda i, f=factor: search(
                i, small_queries, f * k, ["distances"]
            )
        calls[f"get {k} ids, documents + metadatas"] = lambda i: collection.get(
            ids=ids[i * k : (i + 1) * k], include=["documents", "metadatas"]
        )
        for factor in factors:
            rows = np.random.default_rng(factor).integers(0, size, (len(queries), factor * k)).tolist()
            calls[f"sidecar read of {factor * k} random rows (pread, float16)"] = lambda i, r=rows: (
                rerank_vectors(r[i])
            )
            calls[f"funnel x{factor}: small query + sidecar rerank + get {k}"] = lambda i, f=factor: funnel(
                i, f
            )
    report = {}
    for label, call in calls.items():
        for i in range(5):
            call(i)
        seconds = []
        for i in range(len(queries)):
            started = time.perf_counter()
            call(i)
            seconds.append(time.perf_counter() - started)
        ms = 1000 * np.asarray(seconds)
        report[label] = (float(np.median(ms)), float(np.percentile(ms, 95)))
    report["rss MiB"] = rss_mib() - before
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--factors", default="10,40", help="shortlist factors (shortlist = factor x k)")
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--adaptors", type=Path, default=Path("runs/retriever/adaptors"))
    parser.add_argument("--out", type=Path, default=Path("runs/chroma_calls/results.json"))
    args = parser.parse_args()
    factors = [int(f) for f in args.factors.split(",")]
    corpus = np.load(EMBEDDINGS / "scifact" / "corpus.npy")
    adaptor = str(adaptor_for("scifact", corpus, args.adaptors))
    folder = args.out.parent / f"db{args.size}"
    if folder.exists():
        raise SystemExit(f"{folder} exists: remove it (a stale database would skew ingest and disk)")
    results = {"size": args.size, "load average": os.getloadavg()[0]}
    results |= in_fresh_process(ingest_job, str(folder), args.size, adaptor)
    for name in ("plain", "small"):
        served = in_fresh_process(
            serve_job, str(folder), name, args.size, adaptor, args.k, factors, args.queries
        )
        results[f"{name} rss MiB"] = served.pop("rss MiB")
        results |= served
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"N = {args.size:,}, load average {results['load average']:.1f} at start\n")
    print("| call | median ms | p95 ms |\n|---|---|---|")
    for label, value in results.items():
        if isinstance(value, tuple):
            print(f"| {label} | {value[0]:.2f} | {value[1]:.2f} |")
    print("\n| | plain 384-d | small 64-d + sidecar | ratio |\n|---|---|---|---|")
    for what in ("rss MiB", "disk MiB", "ingest s"):
        plain, small = results[f"plain {what}"], results[f"small {what}"]
        print(f"| {what} | {plain:.1f} | {small:.1f} | {small / plain:.2f} |")


if __name__ == "__main__":
    main()
