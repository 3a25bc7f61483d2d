"""The store through a `chroma run` server against one plain 384-d collection on the same kind of server (issue 26).

    PYTHONPATH=. .venv/bin/python benchmarks/server_layout.py --size 200000

Systems, each in its own `chroma run` server process and folder (HNSW: cosine, `DEFAULT_HNSW`):
- `plain`: one 384-d collection of the base vectors: what Chroma users have without us.
- `store`: `MatryoshkaStore` with its defaults through the server: the 64-d collection, each record carrying
  its int8 rerank row in its metadata (`rerank_home="metadata"`, `rerank_rows="int8"`).
- `store-float16`: the same with float16 rows (`rerank_rows="float16"`, the layout before int8 rows).
- `store-collection`: `rerank_home="collection"`, the earlier server layout (a second 384-d collection).
The vectors are `retriever.synthetic` (real SciFact + NFCorpus MiniLM vectors, then noisy copies of them: a real
spectrum, synthetic neighbourhoods), the queries real SciFact test queries; the adaptor is trained without labels
(`retriever.adaptor_for`), so the store reranks with the base vectors and recall is against exact search on them.

Per system: ingest through a fresh server, stop it; start a fresh server on the folder and answer `--serve`
queries (cycled) from a fresh client process; then read the server's VmRSS (/proc/<pid>/status) and the
client's RSS growth (the client imports chromadb, numpy and the store before its baseline). Disk is the
server's folder after it stopped. Latency is per query, measured in one more client process with every server
up, each query asked of every system in turn (the order rotating), so the machine's load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from retriever import (
    NAME,
    K,
    add_scale_arguments,
    disk_mib,
    exact_top,
    in_fresh_process,
    recall,
    rss_mib,
    scale_inputs,
    table,
    timed_in_turn,
    unit,
    write_report,
)

from tests.chroma_server import ChromaServer

SYSTEMS = ("plain", "store", "store-float16", "store-collection")
COLUMNS = (
    ("recall@10 vs exact", "R@10 vs exact", "{:.4f}"),
    ("median_ms", "median ms", "{:.2f}"),
    ("median_ms ratio", "x plain", "{:.2f}"),
    ("p95_ms", "p95 ms", "{:.2f}"),
    ("p95_ms ratio", "x plain", "{:.2f}"),
    ("rss_mib", "server RSS MiB", "{:.0f}"),
    ("rss_mib ratio", "x plain", "{:.2f}"),
    ("client_rss_mib", "client RSS MiB", "{:.0f}"),
    ("both_rss_mib ratio", "server + client x plain", "{:.2f}"),
    ("disk_mib", "disk MiB", "{:.1f}"),
    ("disk_mib ratio", "x plain", "{:.2f}"),
    ("ingest_s", "ingest s", "{:.1f}"),
    ("ingest_s ratio", "x plain", "{:.2f}"),
    ("widened", "widened", "{:.1%}"),
)


def server_rss_mib(server: ChromaServer) -> float:
    """VmRSS of the server process in MiB."""
    assert server.process is not None
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _open(system: str, port: int):
    """query(vector, k) -> ids, of `system` on the server at `port`; and the store's stats (None for plain)."""
    import chromadb

    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    if system == "plain":
        collection = client.get_collection(NAME, embedding_function=None)

        def query(vector, k):  # documents, metadatas and distances: what plain users ask for
            return collection.query(query_embeddings=[unit(vector[None])[0]], n_results=k)["ids"][0]

        return query, None
    from matryoshka_rag.store.store import MatryoshkaStore

    store = MatryoshkaStore(NAME, client=client)
    return (lambda vector, k: [hit.id for hit in store.query(vector, k=k)]), store.stats


def ingest_job(system: str, port: int, work: str, adaptor: str) -> dict:
    import chromadb

    from matryoshka_rag.store.store import DEFAULT_HNSW, MatryoshkaStore

    ids, vectors = json.loads((Path(work) / "ids.json").read_text()), np.load(Path(work) / "vectors.npy")
    client = chromadb.HttpClient(host="127.0.0.1", port=port)
    started = time.perf_counter()
    if system == "plain":
        configuration = {"hnsw": {"space": "cosine", **DEFAULT_HNSW}}
        collection = client.create_collection(NAME, configuration=configuration, embedding_function=None)
        batch = client.get_max_batch_size()
        for start in range(0, len(ids), batch):
            part = slice(start, start + batch)
            collection.upsert(ids=ids[part], embeddings=unit(vectors[part]))
    else:
        home = "collection" if system == "store-collection" else "auto"
        rows = "float16" if system == "store-float16" else None
        store = MatryoshkaStore(NAME, adaptor, client=client, rerank_home=home, rerank_rows=rows)
        store.add(ids, embeddings=vectors)
    return {"ingest_s": time.perf_counter() - started}


def serve_job(system: str, port: int, work: str, serve: int) -> dict:
    import chromadb  # noqa: F401 - imported by every system before the baseline RSS

    import matryoshka_rag.store.store  # noqa: F401

    queries = np.load(Path(work) / "queries.npy")
    before = rss_mib()
    query, stats = _open(system, port)
    ranked = [query(queries[i % len(queries)], K) for i in range(max(serve, len(queries)))][: len(queries)]
    widened = stats.widened / stats.queries if stats else 0.0
    return {"ranked": ranked, "client_rss_mib": rss_mib() - before, "widened": widened}


def latency_job(ports: dict[str, int], work: str, serve: int) -> dict[str, list[float]]:
    """Seconds per query of each system (name -> server port), each query asked of every system in turn."""
    queries = np.load(Path(work) / "queries.npy")
    opened = {system: _open(system, port)[0] for system, port in ports.items()}
    return timed_in_turn(opened, queries, K, serve)


def run(size: int, args) -> dict:
    queries, adaptor, ids, vectors = scale_inputs(size, args)
    systems = args.systems.split(",")
    print(f"{size} vectors, {len(queries)} SciFact queries, systems {', '.join(systems)}", flush=True)
    report: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="server-layout-") as work:
        (Path(work) / "ids.json").write_text(json.dumps(ids))
        np.save(Path(work) / "vectors.npy", vectors)
        np.save(Path(work) / "queries.npy", np.asarray(queries, np.float32))
        servers = {system: ChromaServer(Path(work) / system) for system in systems}
        try:
            for system, server in servers.items():
                ingested = in_fresh_process(ingest_job, system, server.start().port, work, adaptor)
                server.stop()
                served = in_fresh_process(serve_job, system, server.start().port, work, args.serve)
                report[system] = ingested | served | {"rss_mib": server_rss_mib(server)}
                print(
                    f"  {system}: ingest {ingested['ingest_s']:.1f} s, server RSS {report[system]['rss_mib']:.0f}"
                )
            ports = {system: server.port for system, server in servers.items()}
            for system, seconds in in_fresh_process(latency_job, ports, work, args.serve).items():
                report[system]["seconds"] = seconds
        finally:
            for server in servers.values():
                server.stop()
        for system, server in servers.items():
            report[system]["disk_mib"] = disk_mib(server.folder)
    exact = exact_top(vectors, queries, ids)
    rows = {}
    for system, result in report.items():
        ms = 1000 * np.asarray(result["seconds"])
        rows[system] = {
            "recall@10 vs exact": recall(result["ranked"], exact),
            "median_ms": float(np.median(ms)),
            "p95_ms": float(np.percentile(ms, 95)),
            "rss_mib": result["rss_mib"],
            "client_rss_mib": result["client_rss_mib"],
            "both_rss_mib": result["rss_mib"] + result["client_rss_mib"],
            "disk_mib": result["disk_mib"],
            "ingest_s": result["ingest_s"],
            "widened": result["widened"],
        }
    for row in rows.values():
        for key in ("median_ms", "p95_ms", "rss_mib", "both_rss_mib", "disk_mib", "ingest_s"):
            row[f"{key} ratio"] = row[key] / rows["plain"][key]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="50000", help="comma-separated corpus sizes")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="systems compared (plain first)")
    add_scale_arguments(parser, Path("runs/server_layout/results.json"))
    args = parser.parse_args()
    command = "python benchmarks/server_layout.py " + shlex.join(sys.argv[1:])
    load = os.getloadavg()[0]
    results, sections = {}, []
    for size in (int(s) for s in args.size.split(",")):
        results[size] = run(size, args)
        sections.append(f"{size:,} vectors:\n\n{table(results[size], COLUMNS)}")
        print(sections[-1], flush=True)
    write_report(results, sections, args, command, load)


if __name__ == "__main__":
    main()
