"""Quality through the frameworks (issue 3): nDCG@10 on SciFact's test queries of a LangChain Chroma store and
of a LlamaIndex ``VectorStoreIndex`` built with the adapted 64-dim embeddings, against the core evaluation's
exact search for the same adaptor at 64 dims.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/framework_quality.py

- Core: ``matryoshka_rag.evaluation.beir_eval.score_dims`` on ``adaptor.transform`` of the precomputed vectors, 64 dims,
  exact cosine search.
- LangChain: ``AdaptedEmbeddings(base=lookup, path=adaptor, dim=64)`` -> ``langchain_chroma.Chroma``
  (embedded, temporary folder, cosine, HNSW ``ef_construction=200, ef_search=400, max_neighbors=32``), all
  documents added with their doc ids in chunks below Chroma's batch limit of 5,461, then
  ``similarity_search_with_score(query, k=10)`` for each test query.
- LlamaIndex: ``VectorStoreIndex`` of ``TextNode(id_=doc id)`` over a ``ChromaVectorStore`` (its own
  collection, same settings), ``embed_model=AdaptedEmbedding(base=lookup, path=adaptor, dim=64)``, retriever
  with ``similarity_top_k=10``.

Both framework runs are scored with ``matryoshka_rag.scoring.metrics.mean_metric`` against the test qrels, as the
core is.
The base model is a lookup table of the precomputed all-MiniLM-L6-v2 vectors (see :func:`lookup_provider`).
The adaptor is ``--adaptor`` if given, else ``runs/framework_quality/adaptor`` (trained with the core
trainer's defaults on the SciFact corpus vectors the first time, reused afterwards).

Prints a Markdown table (path, nDCG@10, difference from the core, build and query seconds - for the core: the
adaptor transform plus exact search -, top-10 overlap with exact search) and exits with status 1 if a
framework's nDCG@10 differs from the core's by more than 0.01.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from matryoshka_rag.data.beir import BeirDataset, load_beir, load_precomputed
from matryoshka_rag.embeddings.providers import CallableProvider

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATASET = SHARED / "beir" / "scifact"
EMBEDDINGS = SHARED / "embeddings" / "all-MiniLM-L6-v2" / "scifact"
DEFAULT_ADAPTOR = REPO / "runs" / "framework_quality" / "adaptor"
MODEL = "all-MiniLM-L6-v2"
DIM = 64
K = 10
TOLERANCE = 0.01
CHUNK = 5000  # texts per add: Chroma rejects batches above client.get_max_batch_size() = 5461
HNSW = {"space": "cosine", "ef_construction": 200, "ef_search": 400, "max_neighbors": 32}

Run = dict[str, dict[str, float]]


# -- the base model: precomputed vectors looked up by text ---------------------------------------------------


def lookup_provider(texts: Sequence[str], vectors: np.ndarray, name: str = MODEL) -> CallableProvider:
    """A provider named ``name`` returning ``vectors[i]`` for ``texts[i]``; another text raises ``KeyError``.

    Why a lookup and not the model: encoding SciFact's 5,183 documents with all-MiniLM-L6-v2 takes 10+ minutes
    on this 2-core CPU (22 on a busy day). The precomputed vectors are exactly that model's output for these
    texts (the test suite checks that the model reproduces them), so the frameworks see the same base vectors
    they would get from the real model, and any difference from the core comes from the wrappers and stores.
    """
    table = dict(zip(texts, np.asarray(vectors, dtype=np.float32)))

    def embed(batch: list[str]) -> np.ndarray:
        unknown = [t for t in batch if t not in table]
        if unknown:
            raise KeyError(
                f"{len(unknown)} text(s) without a precomputed {name} vector (first: {unknown[0][:80]!r}); "
                "the lookup knows only the dataset's document and query texts"
            )
        return np.stack([table[t] for t in batch])

    return CallableProvider(embed, name)


def lookup_langchain(provider: CallableProvider):
    """The lookup as a LangChain ``Embeddings`` whose ``model_name`` is the provider's name."""
    from langchain_matryoshka_rag import ProviderEmbeddings

    return ProviderEmbeddings(provider=provider)


def lookup_llamaindex(provider: CallableProvider):
    """The lookup as a LlamaIndex ``BaseEmbedding`` whose ``model_name`` is the provider's name."""
    from llama_index.embeddings.matryoshka_rag import ProviderEmbedding

    return ProviderEmbedding(provider=provider)


# -- data ----------------------------------------------------------------------------------------------------


def load_scifact(
    dataset_dir: Path = DATASET, embeddings_dir: Path = EMBEDDINGS
) -> tuple[BeirDataset, np.ndarray, np.ndarray, dict[str, dict[str, int]]]:
    """SciFact, its precomputed corpus and query vectors (rows aligned to the dataset) and its test qrels."""
    dataset = load_beir(dataset_dir)
    docs, queries = load_precomputed(embeddings_dir, dataset)
    return dataset, docs, queries, dataset.qrels("test")


def dataset_slice(
    dataset: BeirDataset,
    docs: np.ndarray,
    queries: np.ndarray,
    qrels: dict[str, dict[str, int]],
    n_queries: int = 30,
    n_random: int = 300,
    seed: int = 0,
) -> tuple[BeirDataset, np.ndarray, np.ndarray, dict[str, dict[str, int]]]:
    """The first ``n_queries`` judged queries, their judged documents plus ``n_random`` other random documents
    (dataset order kept), and the qrels of those queries."""
    query_ids = [q for q in dataset.query_ids if q in qrels][:n_queries]
    judged = {d for q in query_ids for d in qrels[q]}
    others = [d for d in dataset.corpus_ids if d not in judged]
    keep = judged | set(random.Random(seed).sample(others, min(n_random, len(others))))
    doc_rows = [i for i, d in enumerate(dataset.corpus_ids) if d in keep]
    query_row = {q: i for i, q in enumerate(dataset.query_ids)}
    query_rows = [query_row[q] for q in query_ids]
    part = BeirDataset(
        f"{dataset.name}-slice",
        [dataset.corpus_ids[i] for i in doc_rows],
        [dataset.corpus_texts[i] for i in doc_rows],
        query_ids,
        [dataset.query_texts[i] for i in query_rows],
    )
    return part, docs[doc_rows], queries[query_rows], {q: dict(qrels[q]) for q in query_ids}


def adaptor_folder(given: Path | None, corpus: np.ndarray, default: Path = DEFAULT_ADAPTOR) -> Path:
    """``given``, else ``default`` (trained with the trainer's defaults on ``corpus`` if not there yet)."""
    if given is not None:
        return given
    if not (default / "config.json").is_file():
        from matryoshka_rag import save_adaptor, train_unsupervised

        print(f"training an adaptor on {len(corpus)} SciFact vectors (trainer defaults)", flush=True)
        save_adaptor(train_unsupervised(corpus, base_model=MODEL, progress=False), default, overwrite=True)
    return default


# -- the three paths -----------------------------------------------------------------------------------------


def core_run(
    dataset: BeirDataset,
    docs: np.ndarray,
    queries: np.ndarray,
    qrels: dict[str, dict[str, int]],
    adaptor_path: Path,
    dim: int = DIM,
) -> tuple[float, Run]:
    """The core evaluation's nDCG@10 (``score_dims``, exact search on the adapted vectors' first ``dim`` dims)
    and the exact top-``K`` of each judged query (to compare the framework runs with)."""
    import torch

    from matryoshka_rag import load_adaptor
    from matryoshka_rag.evaluation.beir_eval import score_dims
    from matryoshka_rag.training.neighbours import exact_search

    adaptor = load_adaptor(adaptor_path)
    adapted_docs, adapted_queries = adaptor.transform(docs, dim), adaptor.transform(queries, dim)
    ndcg = score_dims(dataset, adapted_docs, adapted_queries, qrels, [dim])["ndcg@10"][dim]
    rows = [i for i, q in enumerate(dataset.query_ids) if q in qrels]
    scores, indices = exact_search(
        torch.from_numpy(np.ascontiguousarray(adapted_queries[rows, :dim])),
        torch.from_numpy(np.ascontiguousarray(adapted_docs[:, :dim])),
        min(K, len(docs)),
    )
    run = {
        dataset.query_ids[q]: {dataset.corpus_ids[d]: s for d, s in zip(idx, sc)}
        for q, idx, sc in zip(rows, indices.tolist(), scores.tolist())
    }
    return ndcg, run


def _judged_queries(dataset: BeirDataset, qrels: dict[str, dict[str, int]]) -> list[tuple[str, str]]:
    return [(q, t) for q, t in zip(dataset.query_ids, dataset.query_texts) if q in qrels]


def langchain_run(
    dataset: BeirDataset,
    qrels: dict[str, dict[str, int]],
    provider: CallableProvider,
    adaptor_path: Path,
    folder: Path,
    dim: int = DIM,
) -> tuple[Run, float, float]:
    """Ingest every document into a ``langchain_chroma.Chroma`` store through ``AdaptedEmbeddings``, search
    each judged query: (run of scores ``1 - cosine distance``, build seconds, query seconds)."""
    from langchain_chroma import Chroma

    from langchain_matryoshka_rag import AdaptedEmbeddings

    embeddings = AdaptedEmbeddings(base=lookup_langchain(provider), path=str(adaptor_path), dim=dim)
    started = time.perf_counter()
    store = Chroma(
        collection_name="langchain",
        embedding_function=embeddings,
        persist_directory=str(folder / "langchain"),
        collection_configuration={"hnsw": HNSW},
    )
    for start in range(0, len(dataset.corpus_ids), CHUNK):
        store.add_texts(
            dataset.corpus_texts[start : start + CHUNK], ids=dataset.corpus_ids[start : start + CHUNK]
        )
    built = time.perf_counter()
    run = {
        query_id: {doc.id: 1.0 - distance for doc, distance in store.similarity_search_with_score(text, k=K)}
        for query_id, text in _judged_queries(dataset, qrels)
    }
    return run, built - started, time.perf_counter() - built


def llamaindex_run(
    dataset: BeirDataset,
    qrels: dict[str, dict[str, int]],
    provider: CallableProvider,
    adaptor_path: Path,
    folder: Path,
    dim: int = DIM,
) -> tuple[Run, float, float]:
    """Build a ``VectorStoreIndex`` over a ``ChromaVectorStore`` with ``AdaptedEmbedding``, retrieve for each
    judged query: (run of LlamaIndex's scores ``exp(-cosine distance)``, build seconds, query seconds)."""
    import chromadb
    from llama_index.core import StorageContext, VectorStoreIndex
    from llama_index.core.schema import TextNode
    from llama_index.vector_stores.chroma import ChromaVectorStore

    from llama_index.embeddings.matryoshka_rag import AdaptedEmbedding

    embed_model = AdaptedEmbedding(base=lookup_llamaindex(provider), path=adaptor_path, dim=dim)
    started = time.perf_counter()
    client = chromadb.PersistentClient(path=str(folder / "llamaindex"))
    collection = client.create_collection("llamaindex", embedding_function=None, configuration={"hnsw": HNSW})
    nodes = [TextNode(id_=i, text=t) for i, t in zip(dataset.corpus_ids, dataset.corpus_texts)]
    index = VectorStoreIndex(
        nodes,
        storage_context=StorageContext.from_defaults(
            vector_store=ChromaVectorStore(chroma_collection=collection)
        ),
        embed_model=embed_model,
        insert_batch_size=CHUNK,
    )
    built = time.perf_counter()
    retriever = index.as_retriever(similarity_top_k=K)
    run = {
        query_id: {hit.node.node_id: float(hit.score) for hit in retriever.retrieve(text)}
        for query_id, text in _judged_queries(dataset, qrels)
    }
    return run, built - started, time.perf_counter() - built


def overlap(run: Run, exact: Run) -> float:
    """Mean share of each query's exact top-``K`` that ``run`` also returned."""
    return float(np.mean([len(set(run.get(q, {})) & set(top)) / len(top) for q, top in exact.items()]))


def compare(
    dataset: BeirDataset,
    docs: np.ndarray,
    queries: np.ndarray,
    qrels: dict[str, dict[str, int]],
    adaptor_path: Path,
    dim: int = DIM,
    folder: Path | None = None,
) -> list[dict]:
    """nDCG@10 of the core (exact), LangChain + Chroma and LlamaIndex + Chroma at ``dim``: one row per path
    with ``path``, ``ndcg@10``, ``difference`` (from the core), ``build_s``, ``query_s`` and ``overlap@10``
    (with exact search). ``docs``/``queries`` are the base vectors of the dataset's texts (the lookup)."""
    from matryoshka_rag.scoring.metrics import mean_metric

    provider = lookup_provider(dataset.corpus_texts + dataset.query_texts, np.concatenate([docs, queries]))
    started = time.perf_counter()
    core, exact = core_run(dataset, docs, queries, qrels, adaptor_path, dim)
    rows = [
        {
            "path": f"core score_dims, exact, {dim} dims",
            "ndcg@10": core,
            "difference": 0.0,
            "build_s": time.perf_counter() - started,
            "query_s": None,
            "overlap@10": 1.0,
        }
    ]
    with tempfile.TemporaryDirectory(dir=folder) as work:
        for name, build in (
            ("LangChain AdaptedEmbeddings + langchain_chroma.Chroma", langchain_run),
            ("LlamaIndex AdaptedEmbedding + VectorStoreIndex(ChromaVectorStore)", llamaindex_run),
        ):
            run, build_s, query_s = build(dataset, qrels, provider, adaptor_path, Path(work), dim)
            ndcg = mean_metric(run, qrels, "ndcg", K)
            rows.append(
                {
                    "path": name,
                    "ndcg@10": ndcg,
                    "difference": ndcg - core,
                    "build_s": build_s,
                    "query_s": query_s,
                    "overlap@10": overlap(run, exact),
                }
            )
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| path | nDCG@10 | difference from core | build s | query s | top-10 overlap with exact |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        query = "-" if r["query_s"] is None else f"{r['query_s']:.1f}"
        lines.append(
            f"| {r['path']} | {r['ndcg@10']:.4f} | {r['difference']:+.4f} | {r['build_s']:.1f} | {query} "
            f"| {r['overlap@10']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--adaptor", type=Path, default=None, help=f"adaptor folder (default: {DEFAULT_ADAPTOR})"
    )
    parser.add_argument("--dim", type=int, default=DIM)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 when sharing the machine)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "framework_quality" / "results.json")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    dataset, docs, queries, qrels = load_scifact()
    adaptor_path = adaptor_folder(args.adaptor, docs)
    print(
        f"{dataset.name}: {len(docs)} documents, {len(qrels)} test queries; adaptor {adaptor_path}",
        flush=True,
    )
    rows = compare(dataset, docs, queries, qrels, adaptor_path, args.dim)
    table = markdown(rows)
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"adaptor": str(adaptor_path), "dim": args.dim, "rows": rows}, indent=2) + "\n"
    )
    worst = max(abs(r["difference"]) for r in rows)
    if worst > TOLERANCE:
        print(f"FAIL: a framework's nDCG@10 differs from the core's by {worst:.4f} > {TOLERANCE}")
        return 1
    print(f"OK: every framework within {TOLERANCE} of the core (largest difference {worst:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
