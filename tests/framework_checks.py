"""Checks shared by the LangChain and LlamaIndex integration tests."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from matryoshka_rag import load_adaptor
from matryoshka_rag.data.beir import BeirDataset

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def check_fitted(path: Path, dims: tuple[int, ...], supervised: bool, corpus_size: int, steps: int):
    """The adaptor folder written by a wrapper's ``fit``: loadable, as asked, trained; returns the adaptor."""
    adaptor = load_adaptor(path)
    # the residual MLP's last layer starts at zero (f = z): training moved it
    assert float(adaptor.mlp[-1].weight.detach().abs().max()) > 0
    assert adaptor.config.dims == dims and adaptor.config.base_model == "all-MiniLM-L6-v2"
    training = adaptor.metadata["training"]
    assert ("supervised_stage" in training) == supervised  # a supervised stage ran when asked
    kept = supervised and training["supervised_stage"]["kept"]
    assert training["mode"] == ("supervised" if kept else "unsupervised")
    assert training["corpus_size"] == corpus_size and training["unsupervised"]["max_steps"] == steps
    return adaptor


def run_example(name: str, scifact: BeirDataset, adaptor: Path, runs: Path) -> list[dict]:
    """Run ``examples/<name>.py``'s ``main`` with ``--quick`` (the slice: 40 documents, 2 test questions, k=3).

    Checks that every retrieved document is a real SciFact document with its text, that the answer comes
    from the offline stand-in, and that a relevant document is retrieved for at least one question.
    """
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    example = importlib.import_module(name)
    results = example.main(["--quick", "--adaptor", str(adaptor), "--runs", str(runs)])
    text_of = dict(zip(scifact.corpus_ids, scifact.corpus_texts))
    qrels = scifact.qrels("test")
    asked = [q for q in scifact.query_ids if q in qrels][:2]
    assert len(results) == 2
    for row in results:
        assert len(row["retrieved"]) == 3
        assert all(text_of[doc_id] == text for doc_id, text in row["retrieved"])
        assert row["answer"].startswith("[offline stand-in")
    assert any(set(qrels[q]) & {d for d, _ in row["retrieved"]} for q, row in zip(asked, results))
    return results


def scored_slice(
    scifact: BeirDataset, n: int = 60, n_questions: int = 6
) -> tuple[list[str], list[str], list[str]]:
    """Ids and texts of the first `n` documents and the relevant ones of the first `n_questions` test questions
    (all of whose relevant documents are in the corpus), and those questions: near and far hits alike."""
    qrels, corpus = scifact.qrels("test"), dict(zip(scifact.corpus_ids, scifact.corpus_texts))
    asked = dict(zip(scifact.query_ids, scifact.query_texts))
    chosen = [q for q in scifact.query_ids if q in qrels and set(qrels[q]) <= set(corpus)][:n_questions]
    ids = list(dict.fromkeys([*scifact.corpus_ids[:n], *(d for q in chosen for d in qrels[q])]))
    return ids, [corpus[i] for i in ids], [asked[q] for q in chosen]
