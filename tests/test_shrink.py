"""`shrink`: a collection built by langchain-chroma (real MiniLM vectors of SciFact) into a Matryoshka store."""

from __future__ import annotations

import subprocess
import sys

import chromadb
import numpy as np
import pytest

from matryoshka_rag.errors import InputError
from matryoshka_rag.retriever import MatryoshkaStore
from matryoshka_rag.shrink import shrink, stored_vectors


@pytest.fixture(scope="module")
def langchain_db(tmp_path_factory, scifact, precomputed_minilm):
    """1,500 SciFact documents in a langchain-chroma collection (its defaults: l2 space, `embedding_function`
    the LangChain embeddings), embedded with the precomputed all-MiniLM-L6-v2 vectors."""
    from langchain_chroma import Chroma
    from langchain_core.embeddings import Embeddings

    class Precomputed(Embeddings):
        def embed_documents(self, texts):
            return precomputed_minilm(texts).tolist()

        def embed_query(self, text):
            return precomputed_minilm([text])[0].tolist()

    folder = tmp_path_factory.mktemp("langchain") / "db"
    texts = scifact.corpus_texts[:1500]
    Chroma(
        collection_name="papers", embedding_function=Precomputed(), persist_directory=str(folder)
    ).add_texts(texts, metadatas=[{"n": i} for i in range(len(texts))], ids=scifact.corpus_ids[:1500])
    return folder


def _contents(folder, name):
    found = (
        chromadb.PersistentClient(str(folder)).get_collection(name).get(include=["documents", "metadatas"])
    )
    return found["ids"], found["documents"], found["metadatas"]


def test_shrink_a_langchain_collection(langchain_db, tmp_path, scifact, scifact_vectors):
    before = _contents(langchain_db, "papers")
    report = shrink(
        langchain_db,
        "papers",
        out=tmp_path / "small",
        base_model="all-MiniLM-L6-v2",
        sample=100,
        max_steps=60,
    )
    assert _contents(langchain_db, "papers") == before  # the original is only read
    assert report.records == 1500 and (report.base_dim, report.small_dim) == (384, 64)
    assert report.recall_at_10 >= 0.95
    assert report.disk_after_mib < report.disk_before_mib
    store = MatryoshkaStore("papers", path=tmp_path / "small")
    assert store.count() == 1500
    hit = store.query(scifact_vectors[42], k=1)[0]
    assert (hit.id, hit.document, hit.metadata) == (
        scifact.corpus_ids[42],
        scifact.corpus_texts[42],
        {"n": 42},
    )
    with pytest.raises(InputError, match="already holds a store named 'papers'"):
        shrink(langchain_db, "papers", out=tmp_path / "small", progress=False)


def test_cli_shrink_errors_name_the_problem(langchain_db, tmp_path):
    client = chromadb.PersistentClient(str(tmp_path / "db"))
    client.create_collection("empty")
    cases = [
        (["--path", langchain_db, "--collection", "nope"], "collection 'nope' does not exist"),
        (["--path", tmp_path / "db", "--collection", "empty"], "is empty"),
        (["--path", tmp_path / "missing", "--collection", "x"], "no Chroma database folder"),
        (["--path", langchain_db, "--collection", "papers", "--dim", "384"], "dim must be in 1..383"),
        (["--path", langchain_db, "--collection", "papers", "--out", langchain_db], "of its own"),
    ]
    for argv, words in cases:
        result = subprocess.run(
            [sys.executable, "-m", "matryoshka_rag.cli", "shrink", *map(str, argv)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and words in result.stderr, (argv, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1


def test_stored_vectors_refuses_mixed_dims_and_missing_vectors():
    with pytest.raises(InputError, match="mixed dims: 'a' has 3, 'c' has 2"):
        stored_vectors([[1, 0, 0], [0, 1, 0], [1, 1]], ["a", "b", "c"], "docs")
    with pytest.raises(InputError, match="without vectors"):
        stored_vectors([[1, 0], None], ["a", "b"], "docs")
    with pytest.raises(InputError, match="NaN"):
        stored_vectors([[1, 0], [np.nan, 1]], ["a", "b"], "docs")
    assert stored_vectors([[1, 0], [0, 2]], ["a", "b"], "docs").dtype == np.float32
