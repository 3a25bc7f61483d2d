"""Parity of the framework vector stores (issue 13) on a SciFact slice: nDCG@10 through LangChain's
``as_retriever`` and a LlamaIndex ``VectorStoreIndex`` retriever over ``MatryoshkaVectorStore`` equals the core
``MatryoshkaStore.query``'s within 0.001, for an unsupervised and a supervised adaptor.

The comparison is ``benchmarks/framework_stores.py``'s own (the full test split is in BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from matryoshka_rag.scoring.metrics import ndcg_at_k

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_framework_stores_equal_the_core_store(
    scifact, scifact_embeddings, small_adaptor_dir, supervised_adaptor_dir, tmp_path
):
    stores, quality = _load("framework_stores"), _load("framework_quality")
    docs, queries = scifact_embeddings
    part, part_docs, part_queries, qrels = quality.dataset_slice(
        scifact, docs, queries, scifact.qrels("test"), n_queries=30, n_random=300
    )
    adaptors = {"unsupervised": small_adaptor_dir, "supervised": supervised_adaptor_dir}

    rows = stores.compare(part, part_docs, part_queries, qrels, adaptors, folder=tmp_path)

    assert [(r["adaptor"], r["path"].split()[0]) for r in rows] == [
        (kind, path) for kind in adaptors for path in ("core", "LangChain", "LlamaIndex")
    ]
    unsupervised_core = rows[0]["ndcg@10"]  # the store reranks with the base vectors: exact full-dim search
    base = np.asarray(part_docs) / np.linalg.norm(part_docs, axis=1, keepdims=True)
    ranked = [[part.corpus_ids[i] for i in np.argsort(-(base @ q))[:10]] for q in part_queries]
    exact = np.mean([ndcg_at_k(r, qrels[q], 10) for r, q in zip(ranked, part.query_ids)])
    assert abs(unsupervised_core - exact) <= 0.01
    for row in rows:
        assert abs(row["difference"]) <= stores.TOLERANCE and row["same_top10"] >= 0.95, row
