"""Where a server-layout query's time goes (issue 26): each Chroma call of the store's query, timed alone.

    PYTHONPATH=. .venv/bin/python benchmarks/server_query_parts.py --adaptors runs/server_layout/adaptors

One fresh `chroma run` server holds SciFact (5,183 documents with their texts, real all-MiniLM-L6-v2 vectors)
twice: as the store with int8 rows and with float16 rows (`rerank_rows`). Per SciFact test query (k = 10, a
shortlist of `shortlist_factor * k` = 300), asked in turn of each part, the parts of a query are timed:
- `search`: the 64-d search of 300 with distances only (no rows: what the rerank needs besides them);
- `search+rows`: the same with metadatas, so with the rows (the store's shortlist call);
- `search+rows+docs`: the same with documents too (a layout that needs no second call);
- `get k`: the read of the k hits' documents and metadata (the store's second call);
- `store.query`: the whole query (shortlist, decode, rerank, widening, records).
`answer KB` is the JSON size of the answer as the client holds it (ids, distances, metadatas, documents).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from retriever import EMBEDDINGS, SHARED, K, adaptor_for, write_report

from tests.chroma_server import ChromaServer

PARTS = ("search", "search+rows", "search+rows+docs", "get k", "store.query")


def _answer_kib(found: dict) -> float:
    """KiB of the JSON of a Chroma answer's ids, distances, metadatas and documents."""
    fields = {key: found.get(key) for key in ("ids", "distances", "metadatas", "documents")}
    return len(json.dumps(fields)) / 1024


def measure(server: ChromaServer, adaptor: str, codec: str, texts, ids, vectors, queries, k: int) -> dict:
    """Median ms of each part (`PARTS`) and answer KiB of each search, over `queries`, for the store with
    `codec` rows on `server`."""
    import chromadb

    from matryoshka_rag.store.store import MatryoshkaStore

    client = chromadb.HttpClient(host="127.0.0.1", port=server.port)
    store = MatryoshkaStore(f"parts-{codec}", adaptor, client=client, rerank_rows=codec)
    store.add(ids, texts=texts, embeddings=vectors)
    n = store.shortlist_factor * k
    includes = {
        "search": ["distances"],
        "search+rows": ["distances", "metadatas"],
        "search+rows+docs": ["distances", "metadatas", "documents"],
    }
    seconds: dict[str, list[float]] = {part: [] for part in PARTS}
    kib: dict[str, list[float]] = {part: [] for part in includes}
    for query in queries:
        small = store.adaptor.transform(query[None], dim=store.small_dim)[0]
        for part, include in includes.items():
            started = time.perf_counter()
            found = store.small.query(query_embeddings=[small], n_results=n, include=include)
            seconds[part].append(time.perf_counter() - started)
            kib[part].append(_answer_kib({key: (value or [None])[0] for key, value in found.items()}))
        hits = found["ids"][0][:k]
        started = time.perf_counter()
        store.small.get(ids=hits, include=["documents", "metadatas"])
        seconds["get k"].append(time.perf_counter() - started)
        started = time.perf_counter()
        store.query(query, k=k)
        seconds["store.query"].append(time.perf_counter() - started)
    report = {f"{part} ms": 1000 * float(np.median(s)) for part, s in seconds.items()}
    report |= {f"{part} KiB": float(np.median(s)) for part, s in kib.items()}
    return report | {"widened": store.stats.widened / store.stats.queries}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=300, help="SciFact test queries")
    parser.add_argument("--adaptors", type=Path, default=Path("runs/retriever/adaptors"))
    parser.add_argument("--out", type=Path, default=Path("runs/server_layout/parts.json"))
    parser.add_argument("--append", type=Path, help="append the table to this markdown file")
    args = parser.parse_args()
    from matryoshka_rag.data.beir import load_beir, load_precomputed

    data = load_beir(SHARED / "beir" / "scifact")
    corpus, all_queries = load_precomputed(EMBEDDINGS / "scifact", data)
    qrels = data.qrels("test")
    queries = all_queries[[i for i, q in enumerate(data.query_ids) if q in qrels][: args.queries]]
    adaptor = str(adaptor_for("scifact", corpus, args.adaptors))
    rows = {}
    with tempfile.TemporaryDirectory(prefix="server-parts-") as work:
        server = ChromaServer(Path(work) / "db").start()
        try:
            for codec in ("int8", "float16"):
                rows[codec] = measure(
                    server, adaptor, codec, data.corpus_texts, data.corpus_ids, corpus, queries, K
                )
                print(codec, rows[codec], flush=True)
        finally:
            server.stop()
    header = "| rows | " + " | ".join(f"{p} ms" for p in PARTS) + " | answer KiB (search / +rows / +docs) |"
    lines = [header, "|---" * (len(PARTS) + 2) + "|"]
    for codec, row in rows.items():
        times = " | ".join(f"{row[f'{p} ms']:.2f}" for p in PARTS)
        sizes = " / ".join(f"{row[f'{p} KiB']:.0f}" for p in ("search", "search+rows", "search+rows+docs"))
        lines.append(f"| {codec} | {times} | {sizes} |")
    section = "\n".join(lines)
    print(section)
    command = "python benchmarks/server_query_parts.py " + shlex.join(sys.argv[1:])
    write_report({"parts": rows}, [section], args, command, 0.0)


if __name__ == "__main__":
    main()
