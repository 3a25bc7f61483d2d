"""Shared test fixtures: the offline BEIR copies and precomputed embeddings in ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from matryoshka_rag.beir import BeirDataset, load_beir, load_precomputed

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


@pytest.fixture(scope="session")
def scifact() -> BeirDataset:
    return load_beir(BEIR_DIR / "scifact")


@pytest.fixture(scope="session")
def nfcorpus() -> BeirDataset:
    return load_beir(BEIR_DIR / "nfcorpus")


@pytest.fixture(scope="session")
def scifact_embeddings(scifact: BeirDataset):
    """Precomputed all-MiniLM-L6-v2 vectors of SciFact: (docs (5183, 384), queries (1109, 384))."""
    return load_precomputed(EMBEDDINGS_DIR / "scifact", scifact)


@pytest.fixture(scope="session")
def scifact_vectors(scifact_embeddings) -> np.ndarray:
    """SciFact corpus vectors (5183, 384)."""
    return scifact_embeddings[0]


@pytest.fixture(scope="session")
def minilm_provider():
    """The bundled all-MiniLM-L6-v2 (loaded on first call), shared by the framework integration tests."""
    from matryoshka_rag.providers import SentenceTransformerProvider

    return SentenceTransformerProvider("all-MiniLM-L6-v2", device="cpu")


@pytest.fixture(scope="session")
def precomputed_minilm(scifact: BeirDataset, scifact_embeddings):
    """Provider named all-MiniLM-L6-v2 returning the precomputed vector of any SciFact document or query text
    (KeyError for other texts): the real model's vectors without the cost of encoding."""
    from matryoshka_rag.providers import CallableProvider

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
