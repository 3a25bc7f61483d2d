"""Parity of the framework vector stores (issue 13): nDCG@10 on SciFact's test queries through LangChain's
``as_retriever`` over ``MatryoshkaVectorStore`` and through a LlamaIndex ``VectorStoreIndex`` retriever over
its ``MatryoshkaVectorStore`` equals the core ``MatryoshkaStore.query``'s, for an unsupervised and a
supervised adaptor.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/framework_stores.py

Each path builds its own embedded store (temporary folder, 64-dim search, the store's default rerank) from the
same SciFact documents and ids:

- core: ``MatryoshkaStore.upsert`` of the precomputed base vectors, ``query(query vector, k=10)``;
- LangChain: ``MatryoshkaVectorStore(embedding_function=lookup).add_texts``, then
  ``as_retriever(search_kwargs={"k": 10}).invoke(query text)`` (documents in rank order, scored 10..1);
- LlamaIndex: ``VectorStoreIndex(nodes, storage_context=StorageContext(vector_store=MatryoshkaVectorStore),
  embed_model=lookup)``, then ``as_retriever(similarity_top_k=10).retrieve(query text)``.

The base model is ``framework_quality.lookup_provider``: the precomputed all-MiniLM-L6-v2 vector of each text.
Adaptors: ``--unsupervised`` / ``--supervised`` folders, else ``runs/framework_stores/<kind>`` (trained with the
trainer's defaults the first time: unsupervised on the corpus vectors, supervised from it on the train qrels).
Prints a Markdown table and exits with status 1 if a framework's nDCG@10 differs from the core's by more than
0.001.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from framework_quality import (  # noqa: E402 - the benchmarks folder is not a package
    MODEL,
    Run,
    load_scifact,
    lookup_langchain,
    lookup_llamaindex,
    lookup_provider,
)

from matryoshka_rag.data.beir import BeirDataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUNS = REPO / "runs" / "framework_stores"
SMALL_DIM = 64
K = 10
TOLERANCE = 0.001


def train_adaptors(dataset: BeirDataset, docs: np.ndarray, queries: np.ndarray, folder: Path = RUNS) -> dict:
    """``{"unsupervised": folder, "supervised": folder}`` under ``folder``, trained with the defaults when
    absent (supervised: from the unsupervised adaptor, on the train qrels)."""
    from matryoshka_rag import load_adaptor, save_adaptor, train_supervised, train_unsupervised
    from matryoshka_rag.evaluation.beir_eval import labelled_queries

    paths = {"unsupervised": folder / "unsupervised", "supervised": folder / "supervised"}
    if not (paths["unsupervised"] / "config.json").is_file():
        print(f"training the unsupervised adaptor on {len(docs)} SciFact vectors", flush=True)
        save_adaptor(train_unsupervised(docs, base_model=MODEL, progress=False), paths["unsupervised"])
    if not (paths["supervised"] / "config.json").is_file():
        vectors, relevance = labelled_queries(dataset, queries, dataset.qrels("train"))
        print(f"training the supervised adaptor on {len(vectors)} train queries", flush=True)
        stage_one = load_adaptor(paths["unsupervised"])
        adaptor = train_supervised(
            docs, vectors, relevance, adaptor=stage_one, base_model=MODEL, progress=False
        )
        save_adaptor(adaptor, paths["supervised"])
    return paths


def _judged(dataset: BeirDataset, qrels: dict) -> list[tuple[int, str, str]]:
    """(query row, query id, query text) of the judged queries."""
    return [
        (row, q, t) for row, (q, t) in enumerate(zip(dataset.query_ids, dataset.query_texts)) if q in qrels
    ]


def core_run(dataset, docs, queries, qrels, adaptor: Path, folder: Path) -> tuple[Run, float, float]:
    """The core store's own ``query`` by base vector: (run of cosines, build s, query s)."""
    from matryoshka_rag.store.store import MatryoshkaStore

    started = time.perf_counter()
    store = MatryoshkaStore("core", adaptor, path=folder / "core", small_dim=SMALL_DIM)
    store.upsert(dataset.corpus_ids, texts=dataset.corpus_texts, embeddings=docs)
    built = time.perf_counter()
    run = {
        q: {h.id: h.score for h in store.query(queries[row], k=K)} for row, q, _ in _judged(dataset, qrels)
    }
    return run, built - started, time.perf_counter() - built


def langchain_run(dataset, provider, qrels, adaptor: Path, folder: Path) -> tuple[Run, float, float]:
    """LangChain ``as_retriever`` over ``MatryoshkaVectorStore``: (run scored by rank, build s, query s)."""
    from langchain_matryoshka_rag import MatryoshkaVectorStore

    started = time.perf_counter()
    store = MatryoshkaVectorStore(
        "langchain",
        lookup_langchain(provider),
        persist_directory=str(folder / "langchain"),
        adaptor=adaptor,
        small_dim=SMALL_DIM,
    )
    store.add_texts(dataset.corpus_texts, ids=dataset.corpus_ids)
    built = time.perf_counter()
    retriever = store.as_retriever(search_kwargs={"k": K})
    run = {
        q: {doc.id: float(K - rank) for rank, doc in enumerate(retriever.invoke(text))}
        for _, q, text in _judged(dataset, qrels)
    }
    return run, built - started, time.perf_counter() - built


def llamaindex_run(dataset, provider, qrels, adaptor: Path, folder: Path) -> tuple[Run, float, float]:
    """A LlamaIndex ``VectorStoreIndex`` retriever over ``MatryoshkaVectorStore``: (run, build s, query s)."""
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode

    from llama_index.vector_stores.matryoshka_rag import MatryoshkaVectorStore

    started = time.perf_counter()
    store = MatryoshkaVectorStore(
        adaptor, "llamaindex", persist_dir=str(folder / "llamaindex"), small_dim=SMALL_DIM
    )
    nodes = [TextNode(id_=i, text=t) for i, t in zip(dataset.corpus_ids, dataset.corpus_texts)]
    index = VectorStoreIndex(
        nodes,
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=lookup_llamaindex(provider),
    )
    built = time.perf_counter()
    retriever = index.as_retriever(similarity_top_k=K)
    run = {
        q: {hit.node.node_id: float(hit.score) for hit in retriever.retrieve(text)}
        for _, q, text in _judged(dataset, qrels)
    }
    return run, built - started, time.perf_counter() - built


def same_top(run: Run, core: Run) -> float:
    """Share of queries whose top-``K`` ids, in order, are the core's."""
    order = lambda scores: sorted(scores, key=lambda d: -scores[d])  # noqa: E731
    return float(np.mean([order(run.get(q, {})) == order(top) for q, top in core.items()]))


def compare(
    dataset: BeirDataset,
    docs: np.ndarray,
    queries: np.ndarray,
    qrels: dict[str, dict[str, int]],
    adaptors: dict[str, Path],
    folder: Path | None = None,
) -> list[dict]:
    """One row per (adaptor, path): ``adaptor``, ``path``, ``ndcg@10``, ``difference`` from the core store,
    ``same_top10`` (share of queries with the core's top 10 in order), ``build_s``, ``query_s``."""
    from matryoshka_rag.scoring.metrics import mean_metric

    provider = lookup_provider(dataset.corpus_texts + dataset.query_texts, np.concatenate([docs, queries]))
    rows = []
    with tempfile.TemporaryDirectory(dir=folder) as work:
        for kind, adaptor in adaptors.items():
            place = Path(work) / kind
            core, build_s, query_s = core_run(dataset, docs, queries, qrels, adaptor, place)
            reference = mean_metric(core, qrels, "ndcg", K)
            rows.append(_row(kind, "core MatryoshkaStore.query", reference, reference, 1.0, build_s, query_s))
            for name, build in (
                ("LangChain MatryoshkaVectorStore.as_retriever", langchain_run),
                ("LlamaIndex VectorStoreIndex(MatryoshkaVectorStore) retriever", llamaindex_run),
            ):
                run, build_s, query_s = build(dataset, provider, qrels, adaptor, place)
                ndcg = mean_metric(run, qrels, "ndcg", K)
                rows.append(_row(kind, name, ndcg, reference, same_top(run, core), build_s, query_s))
    return rows


def _row(
    kind: str, path: str, ndcg: float, reference: float, same: float, build_s: float, query_s: float
) -> dict:
    return {
        "adaptor": kind,
        "path": path,
        "ndcg@10": ndcg,
        "difference": ndcg - reference,
        "same_top10": same,
        "build_s": build_s,
        "query_s": query_s,
    }


def markdown(rows: list[dict]) -> str:
    lines = [
        "| adaptor | path | nDCG@10 | difference from core | same top 10 as core | build s | query s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['adaptor']} | {r['path']} | {r['ndcg@10']:.4f} | {r['difference']:+.4f} | {r['same_top10']:.4f} "
            f"| {r['build_s']:.1f} | {r['query_s']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unsupervised", type=Path, help="unsupervised adaptor folder (default: trained)")
    parser.add_argument("--supervised", type=Path, help="supervised adaptor folder (default: trained)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 when sharing the machine)")
    parser.add_argument("--out", type=Path, default=RUNS / "results.json")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    dataset, docs, queries, qrels = load_scifact()
    adaptors = {"unsupervised": args.unsupervised, "supervised": args.supervised}
    if None in adaptors.values():
        trained = train_adaptors(dataset, docs, queries)
        adaptors = {kind: path or trained[kind] for kind, path in adaptors.items()}
    print(
        f"{dataset.name}: {len(docs)} documents, {len(qrels)} test queries; adaptors {adaptors}", flush=True
    )
    rows = compare(dataset, docs, queries, qrels, adaptors)
    print(markdown(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = {"adaptors": {k: str(v) for k, v in adaptors.items()}, "small_dim": SMALL_DIM, "rows": rows}
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    worst = max(abs(r["difference"]) for r in rows)
    if worst > TOLERANCE:
        print(f"FAIL: a framework's nDCG@10 differs from the core store's by {worst:.4f} > {TOLERANCE}")
        return 1
    print(f"OK: every framework within {TOLERANCE} of the core store (largest difference {worst:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
