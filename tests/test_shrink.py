"""`shrink`: a collection built by langchain-chroma (real MiniLM vectors of SciFact) into a Matryoshka store."""

from __future__ import annotations

import subprocess
import sys

import chromadb
import numpy as np
import pytest

from matryoshka_rag.errors import InputError
from matryoshka_rag.recipes.shrink import shrink, stored_vectors
from matryoshka_rag.store.store import MatryoshkaStore


def langchain_collection(folder, ids: list[str], texts: list[str], vectors: np.ndarray):
    """`texts` in a langchain-chroma collection "papers" at `folder` (its defaults: l2 space, `embedding_function`
    the LangChain embeddings), embedded with their precomputed all-MiniLM-L6-v2 `vectors`."""
    from langchain_chroma import Chroma
    from langchain_core.embeddings import Embeddings

    vector_of = dict(zip(texts, vectors))

    class Precomputed(Embeddings):
        def embed_documents(self, texts):
            return [vector_of[t].tolist() for t in texts]

        def embed_query(self, text):
            return vector_of[text].tolist()

    Chroma(
        collection_name="papers", embedding_function=Precomputed(), persist_directory=str(folder)
    ).add_texts(texts, metadatas=[{"n": i} for i in range(len(texts))], ids=ids)
    return folder


@pytest.fixture(scope="module")
def langchain_db(tmp_path_factory, scifact, scifact_vectors):
    """The 800 SciFact documents of the slice in a langchain-chroma collection."""
    folder = tmp_path_factory.mktemp("langchain") / "db"
    return langchain_collection(folder, scifact.corpus_ids, scifact.corpus_texts, scifact_vectors)


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
    assert report.records == len(scifact.corpus_ids) and (report.base_dim, report.small_dim) == (384, 64)
    assert report.recall_at_10 >= 0.95
    store = MatryoshkaStore("papers", path=tmp_path / "small")
    assert store.count() == len(scifact.corpus_ids)
    hit = store.query(scifact_vectors[42], k=1)[0]
    assert (hit.id, hit.document, hit.metadata) == (
        scifact.corpus_ids[42],
        scifact.corpus_texts[42],
        {"n": 42},
    )
    with pytest.raises(InputError, match="already holds a store named 'papers'"):
        shrink(langchain_db, "papers", out=tmp_path / "small", progress=False)


def test_the_store_takes_less_disk_than_the_collection(scifact_full, scifact_full_embeddings, tmp_path):
    """With 1,500 documents the store (64-d index, float16 rerank rows, the adaptor) is smaller on disk than the
    384-d collection; with a few hundred the adaptor's own 1.7 MiB outweighs the saving."""
    n = 1500
    folder = langchain_collection(
        tmp_path / "db",
        scifact_full.corpus_ids[:n],
        scifact_full.corpus_texts[:n],
        scifact_full_embeddings[0][:n],
    )
    report = shrink(folder, "papers", out=tmp_path / "small", sample=50, max_steps=20, progress=False)
    assert report.records == n and report.disk_after_mib < report.disk_before_mib


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
            [sys.executable, "-m", "matryoshka_rag.cli.app", "shrink", *map(str, argv)],
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
