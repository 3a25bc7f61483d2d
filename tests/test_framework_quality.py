"""Quality through the frameworks (issue 3), on a SciFact slice: LangChain + Chroma and LlamaIndex + Chroma
with the adapted 64-dim embeddings give the core evaluation's nDCG@10 (exact search) within 0.01.

The comparison is ``benchmarks/framework_quality.py``'s own (the full-corpus run is in BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "framework_quality.py"


@pytest.fixture(scope="module")
def framework_quality():
    spec = importlib.util.spec_from_file_location("framework_quality", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lookup_returns_precomputed_vectors_and_refuses_unknown_texts(
    framework_quality, scifact, scifact_embeddings
):
    docs, queries = scifact_embeddings
    provider = framework_quality.lookup_provider(
        scifact.corpus_texts[:3] + scifact.query_texts[:1], [*docs[:3], queries[0]]
    )
    assert provider.name == "all-MiniLM-L6-v2"
    assert (provider([scifact.query_texts[0], scifact.corpus_texts[2]]) == [queries[0], docs[2]]).all()
    assert framework_quality.lookup_langchain(provider).model_name == "all-MiniLM-L6-v2"
    assert framework_quality.lookup_llamaindex(provider).model_name == "all-MiniLM-L6-v2"
    with pytest.raises(KeyError, match="without a precomputed"):
        provider(["a text that is not in SciFact"])


def exact_ndcg(adaptor_dir, part, docs, queries, qrels, dim: int) -> float:
    """Mean nDCG@10 of exact cosine search over the adapted `dim`-prefixes, written out with numpy."""
    from matryoshka_rag import load_adaptor
    from matryoshka_rag.scoring.metrics import ndcg_at_k

    adaptor = load_adaptor(adaptor_dir)
    documents, queries = adaptor.transform(docs, dim=dim), adaptor.transform(queries, dim=dim)
    ranked = [
        [part.corpus_ids[i] for i in np.argsort(-(documents @ query), kind="stable")[:10]]
        for query in queries
    ]
    return float(np.mean([ndcg_at_k(r, qrels[q], 10) for r, q in zip(ranked, part.query_ids)]))


def test_frameworks_match_core_exact_search_at_64_dims(
    framework_quality, scifact, scifact_embeddings, small_adaptor_dir, tmp_path
):
    docs, queries = scifact_embeddings
    part, part_docs, part_queries, qrels = framework_quality.dataset_slice(
        scifact, docs, queries, scifact.qrels("test"), n_queries=30, n_random=300
    )
    assert len(qrels) == 30 and 300 < len(part.corpus_ids) <= 300 + sum(len(j) for j in qrels.values())

    rows = framework_quality.compare(
        part, part_docs, part_queries, qrels, small_adaptor_dir, dim=64, folder=tmp_path
    )

    core, langchain, llamaindex = rows
    assert core["ndcg@10"] == pytest.approx(
        exact_ndcg(small_adaptor_dir, part, part_docs, part_queries, qrels, 64)
    )
    for row in (langchain, llamaindex):
        assert abs(row["ndcg@10"] - core["ndcg@10"]) <= framework_quality.TOLERANCE, row
        assert row["overlap@10"] >= 0.95, row
