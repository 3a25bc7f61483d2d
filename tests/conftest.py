"""Shared test fixtures.

`scifact`, `scifact_embeddings` and `scifact_vectors` are the committed SciFact slice (`tests/data`, made by
`tests/data/make_slice.py`: 800 documents, 100 test and 200 train queries, their all-MiniLM-L6-v2 vectors), so the
suite runs in a bare clone. `scifact_full`, `scifact_full_embeddings`, `nfcorpus` and `nfcorpus_embeddings` are
the whole sets in `../shared` beside the repository; the tests that take them skip, saying so, without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag.data.beir import BeirDataset, load_beir, load_precomputed

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may download during tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _private_embedding_cache(tmp_path_factory):
    """Tests never read or write the user's embedding cache."""
    os.environ["MATRYOSHKA_RAG_CACHE"] = str(tmp_path_factory.mktemp("default-cache") / "embeddings.sqlite")


REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
BEIR_DIR = SHARED / "beir"
EMBEDDINGS_DIR = SHARED / "embeddings" / "all-MiniLM-L6-v2"
SLICE_DIR = REPO / "tests" / "data" / "scifact"
SLICE_EMBEDDINGS_DIR = REPO / "tests" / "data" / "embeddings" / "all-MiniLM-L6-v2" / "scifact"


def full_set(folder: Path) -> Path:
    """`folder` (a whole BEIR set or its vectors in ../shared); the test skips, naming it, when it is absent."""
    if not folder.is_dir():
        pytest.skip(
            f"needs {folder.relative_to(SHARED.parent)} (the full set; the committed slice is not enough)"
        )
    return folder


@pytest.fixture(scope="session")
def scifact() -> BeirDataset:
    """The committed SciFact slice: 800 documents, 300 queries (100 test, 200 train) with their qrels."""
    return load_beir(SLICE_DIR)


@pytest.fixture(scope="session")
def scifact_embeddings(scifact: BeirDataset):
    """Precomputed all-MiniLM-L6-v2 vectors of the slice (stored float16): (docs (800, 384), queries (300, 384))."""
    return load_precomputed(SLICE_EMBEDDINGS_DIR, scifact)


@pytest.fixture(scope="session")
def scifact_vectors(scifact_embeddings) -> np.ndarray:
    """The slice's corpus vectors (800, 384)."""
    return scifact_embeddings[0]


@pytest.fixture(scope="session")
def scifact_full() -> BeirDataset:
    """The whole of SciFact (5183 documents, 1109 queries) from ../shared."""
    return load_beir(full_set(BEIR_DIR / "scifact"))


@pytest.fixture(scope="session")
def scifact_full_embeddings(scifact_full: BeirDataset):
    """Precomputed all-MiniLM-L6-v2 vectors of the whole of SciFact: (docs (5183, 384), queries (1109, 384))."""
    return load_precomputed(full_set(EMBEDDINGS_DIR / "scifact"), scifact_full)


@pytest.fixture(scope="session")
def nfcorpus() -> BeirDataset:
    """The whole of NFCorpus (3633 documents, 3237 queries) from ../shared."""
    return load_beir(full_set(BEIR_DIR / "nfcorpus"))


@pytest.fixture(scope="session")
def nfcorpus_embeddings(nfcorpus: BeirDataset):
    """Precomputed all-MiniLM-L6-v2 vectors of NFCorpus: (docs (3633, 384), queries (3237, 384))."""
    return load_precomputed(full_set(EMBEDDINGS_DIR / "nfcorpus"), nfcorpus)


@pytest.fixture(scope="session")
def minilm_provider():
    """The bundled all-MiniLM-L6-v2 (loaded on first call), shared by the framework integration tests."""
    from matryoshka_rag.embeddings.providers import SentenceTransformerProvider

    return SentenceTransformerProvider("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="session")
def precomputed_minilm(scifact: BeirDataset, scifact_embeddings):
    """Provider named all-MiniLM-L6-v2 returning the precomputed vector of any SciFact document or query text
    (KeyError for other texts): the real model's vectors without the cost of encoding."""
    from matryoshka_rag.embeddings.providers import CallableProvider

    docs, queries = scifact_embeddings
    table = dict(zip(scifact.corpus_texts, docs)) | dict(zip(scifact.query_texts, queries))
    return CallableProvider(lambda texts: np.stack([table[t] for t in texts]), "all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def small_adaptor_dir(tmp_path_factory, scifact_vectors) -> Path:
    """Adaptor folder for all-MiniLM-L6-v2 (dims 32, 64, 384), trained in seconds on 400 SciFact vectors."""
    from matryoshka_rag import UnsupervisedConfig, save_adaptor, train_unsupervised

    config = UnsupervisedConfig(max_steps=30, eval_every=10)
    adaptor = train_unsupervised(
        scifact_vectors[:400], (32, 64, 384), config, base_model="all-MiniLM-L6-v2", progress=False
    )
    return save_adaptor(adaptor, tmp_path_factory.mktemp("adaptor") / "adaptor")


@pytest.fixture(scope="session")
def supervised_adaptor_dir(tmp_path_factory, scifact, scifact_embeddings, small_adaptor_dir) -> Path:
    """A supervised adaptor (a few steps on SciFact's train qrels, from the session's unsupervised one)."""
    from matryoshka_rag import SupervisedConfig, load_adaptor, save_adaptor, train_supervised
    from matryoshka_rag.evaluation.beir_eval import labelled_queries

    docs, queries = scifact_embeddings
    vectors, relevance = labelled_queries(scifact, queries, scifact.qrels("train"))
    config = SupervisedConfig(max_steps=20, eval_every=10, batch_size=32, max_candidates=6000)
    adaptor = train_supervised(
        docs, vectors, relevance, config=config, adaptor=load_adaptor(small_adaptor_dir), progress=False
    )
    assert adaptor.metadata["training"]["mode"] == "supervised"
    return save_adaptor(adaptor, tmp_path_factory.mktemp("supervised") / "adaptor")


@pytest.fixture(scope="session")
def chroma_server_session(tmp_path_factory):
    """One real `chroma run` server for the session's framework vector-store tests, stopped at the end."""
    from tests.chroma_server import ChromaServer

    server = ChromaServer(tmp_path_factory.mktemp("chroma-server") / "db").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_embedding_adaptor():
    """Adaptor for langchain-tests' `DeterministicFakeEmbedding` (6 dims, dims (3, 6)): a few unsupervised
    steps on 300 fixed random vectors; the standard suites need its base dim, not its quality."""
    from matryoshka_rag import UnsupervisedConfig, train_unsupervised

    vectors = np.random.default_rng(0).normal(size=(300, 6)).astype(np.float32)
    config = UnsupervisedConfig(max_steps=10, eval_every=5, holdout=50, batch_size=64)
    return train_unsupervised(
        vectors, (3, 6), config, base_model="DeterministicFakeEmbedding", progress=False
    )
