"""Smoke test of one installed distribution, run by ``benchmarks/distributions.py`` inside that distribution's own
fresh venv (standard library + what the distribution installed; never the repository's sources).

    python distribution_smoke.py DISTRIBUTION ADAPTOR_DIR RESULT_JSON

Checks, raising on the first failure: the packages the distribution must not pull are not importable; its import
packages come from the venv and hold ``py.typed``; its public classes work on a tiny adaptor folder (vectors
through the adaptor, a store that finds a text; the adapted vectors are written to ``RESULT_JSON`` for the caller
to compare with the torch adaptor); a feature needing a missing extra fails with one line naming it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import random
import subprocess
import sys
from pathlib import Path

TEXTS = [
    f"text number {i} about {topic}" for i, topic in enumerate(["vitamin d", "tuberculosis", "sleep"] * 4)
]
DIM = 8
# What each distribution must not pull: the other framework, and torch/the model (serving needs neither).
ABSENT = {
    "matryoshka-rag": [
        "torch",
        "faiss",
        "chromadb",
        "sentence_transformers",
        "matplotlib",
        "langchain_core",
        "llama_index",
    ],
    "langchain-matryoshka-rag": ["llama_index", "torch", "sentence_transformers"],
    "llama-index-embeddings-matryoshka-rag": ["langchain_core", "chromadb", "torch", "sentence_transformers"],
    "llama-index-vector-stores-matryoshka-rag": [
        "langchain_core",
        "torch",
        "sentence_transformers",
        "llama_index.embeddings.matryoshka_rag",
    ],
}
PACKAGES = {
    "matryoshka-rag": "matryoshka_rag",
    "langchain-matryoshka-rag": "langchain_matryoshka_rag",
    "llama-index-embeddings-matryoshka-rag": "llama_index.embeddings.matryoshka_rag",
    "llama-index-vector-stores-matryoshka-rag": "llama_index.vector_stores.matryoshka_rag",
}
TRAIN_HINT = 'pip install "matryoshka-rag[train]"'


def hash_vector(text: str, dim: int) -> list[float]:
    """A deterministic pseudo-random base vector of ``text``."""
    rng = random.Random(hashlib.sha256(text.encode()).digest())
    return [rng.gauss(0.0, 1.0) for _ in range(dim)]


def check_absent(modules: list[str]) -> None:
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if found:
            raise AssertionError(f"{name} is importable: the distribution pulls it")


def check_installed(package: str) -> None:
    """The package imports from this venv (not the repository) and ships py.typed."""
    folder = Path(importlib.import_module(package).__file__).parent
    if Path(sys.prefix) not in folder.parents:
        raise AssertionError(f"{package} imported from {folder}, not from the venv {sys.prefix}")
    if not (folder / "py.typed").is_file():
        raise AssertionError(f"{package} has no py.typed")


def expect_missing_extra(call, extra_hint: str) -> str:
    """``call()`` must raise MissingExtraError naming ``extra_hint``; its message."""
    from matryoshka_rag import MissingExtraError

    try:
        call()
    except MissingExtraError as error:
        if extra_hint not in str(error) or "\n" in str(error):
            raise AssertionError(f"not one line naming {extra_hint}: {error}") from error
        return str(error)
    raise AssertionError(f"expected MissingExtraError ({extra_hint})")


def smoke_core(adaptor_dir: str, base_dim: int) -> dict:
    from matryoshka_rag import NumpyAdaptor

    base = [hash_vector(text, base_dim) for text in TEXTS]
    adapted = NumpyAdaptor.from_folder(adaptor_dir).transform(base, DIM)

    def train() -> None:
        from matryoshka_rag import train_unsupervised  # noqa: F401

    message = expect_missing_extra(train, TRAIN_HINT)
    cli = Path(sys.executable).with_name("matryoshka-rag")
    subprocess.run([cli, "--help"], check=True, capture_output=True)
    run = subprocess.run([cli, "train", "--corpus", "c.jsonl", "--out", "a"], capture_output=True, text=True)
    if run.returncode != 2 or TRAIN_HINT not in run.stderr or run.stderr.strip().count("\n"):
        raise AssertionError(f"matryoshka-rag train without torch: exit {run.returncode}, {run.stderr!r}")
    return {
        "base": base,
        "adapted": adapted.tolist(),
        "missing_extra": message,
        "cli_error": run.stderr.strip(),
    }


def smoke_langchain(adaptor_dir: str, base_dim: int) -> dict:
    from langchain_core.embeddings import Embeddings

    from langchain_matryoshka_rag import AdaptedEmbeddings, MatryoshkaVectorStore

    class HashEmbeddings(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [hash_vector(text, base_dim) for text in texts]

        def embed_query(self, text: str) -> list[float]:
            return hash_vector(text, base_dim)

    base = HashEmbeddings()
    adapted = AdaptedEmbeddings.from_pretrained(base=base, path=adaptor_dir, dim=DIM).embed_documents(TEXTS)
    store = MatryoshkaVectorStore("docs", base, adaptor=adaptor_dir, small_dim=4, large_dim=DIM)
    store.add_texts(TEXTS)
    found = store.similarity_search(TEXTS[5], k=1)[0].page_content
    if found != TEXTS[5]:
        raise AssertionError(f"the store found {found!r} for {TEXTS[5]!r}")
    message = expect_missing_extra(lambda: AdaptedEmbeddings.fit(base, TEXTS, "new-adaptor"), TRAIN_HINT)
    return {"base": base.embed_documents(TEXTS), "adapted": adapted, "missing_extra": message}


def smoke_llama_embeddings(adaptor_dir: str, base_dim: int) -> dict:
    from llama_index.core.base.embeddings.base import BaseEmbedding

    from llama_index.embeddings.matryoshka_rag import AdaptedEmbedding

    class HashEmbedding(BaseEmbedding):
        def _get_text_embedding(self, text: str) -> list[float]:
            return hash_vector(text, base_dim)

        def _get_query_embedding(self, query: str) -> list[float]:
            return hash_vector(query, base_dim)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return hash_vector(query, base_dim)

    base = HashEmbedding()
    embedding = AdaptedEmbedding.from_pretrained(base=base, path=adaptor_dir, dim=DIM)
    adapted = embedding.get_text_embedding_batch(TEXTS)
    message = expect_missing_extra(lambda: AdaptedEmbedding.fit(base, TEXTS, "new-adaptor"), TRAIN_HINT)
    return {
        "base": [hash_vector(text, base_dim) for text in TEXTS],
        "adapted": adapted,
        "missing_extra": message,
    }


def smoke_llama_vector_stores(adaptor_dir: str, base_dim: int) -> dict:
    from llama_index.core.schema import TextNode
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from llama_index.vector_stores.matryoshka_rag import MatryoshkaVectorStore

    store = MatryoshkaVectorStore(adaptor_dir, "docs", small_dim=4, large_dim=DIM)
    nodes = [
        TextNode(text=text, id_=f"n{i}", embedding=hash_vector(text, base_dim))
        for i, text in enumerate(TEXTS)
    ]
    store.add(nodes)
    result = store.query(
        VectorStoreQuery(query_embedding=hash_vector(TEXTS[5], base_dim), similarity_top_k=1)
    )
    if result.ids != ["n5"]:
        raise AssertionError(f"the store found {result.ids} for node n5")
    return {}


SMOKES = {
    "matryoshka-rag": smoke_core,
    "langchain-matryoshka-rag": smoke_langchain,
    "llama-index-embeddings-matryoshka-rag": smoke_llama_embeddings,
    "llama-index-vector-stores-matryoshka-rag": smoke_llama_vector_stores,
}


def main(distribution: str, adaptor_dir: str, result_path: str) -> None:
    check_absent(ABSENT[distribution])
    check_installed(PACKAGES[distribution])
    base_dim = json.loads((Path(adaptor_dir) / "config.json").read_text())["config"]["base_dim"]
    result = SMOKES[distribution](adaptor_dir, base_dim)
    check_absent(ABSENT[distribution])  # still absent after every import the smoke test made
    result.update(distribution=distribution, absent=ABSENT[distribution], dim=DIM)
    Path(result_path).write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
