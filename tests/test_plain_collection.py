"""A plain Chroma collection of the store's name (one ``langchain-chroma`` or ``ChromaVectorStore`` filled) is
refused in one line naming it and the ``shrink`` command that converts it, before anything is written: never
a new empty store beside it answering ``[]``."""

from __future__ import annotations

import chromadb
import pytest
from langchain_chroma import Chroma
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.schema import TextNode
from llama_index.vector_stores.chroma import ChromaVectorStore

from langchain_matryoshka_rag import MatryoshkaVectorStore as LangChainStore
from langchain_matryoshka_rag import ProviderEmbeddings
from llama_index.embeddings.matryoshka_rag import ProviderEmbedding
from llama_index.vector_stores.matryoshka_rag import MatryoshkaVectorStore as LlamaIndexStore
from matryoshka_rag.errors import InputError
from matryoshka_rag.store.store import MatryoshkaStore


def _collections(folder) -> list[str]:
    return sorted(c.name for c in chromadb.PersistentClient(str(folder)).list_collections())


def _refusal(folder) -> str:
    return (
        rf"collection 'docs' at {folder} is a plain Chroma collection, not a matryoshka-rag store: convert it "
        rf"\(no re-embedding, the original kept\) with `matryoshka-rag shrink --path {folder} --collection docs`"
    )


def test_a_langchain_chroma_collection_is_refused(tmp_path, precomputed_minilm, small_adaptor_dir, scifact):
    base = ProviderEmbeddings(provider=precomputed_minilm)
    folder = tmp_path / "db"
    Chroma("docs", base, persist_directory=str(folder)).add_texts(
        scifact.corpus_texts[:20], ids=scifact.corpus_ids[:20]
    )
    with pytest.raises(InputError, match=_refusal(folder)):
        LangChainStore("docs", base, persist_directory=str(folder), adaptor=small_adaptor_dir)
    with pytest.raises(InputError, match=_refusal(folder)):
        MatryoshkaStore("docs", small_adaptor_dir, path=folder)
    assert _collections(folder) == ["docs"]
    other = LangChainStore("other", base, persist_directory=str(folder), adaptor=small_adaptor_dir)
    assert other.store.count() == 0  # another name beside it is a store of its own


def test_a_chroma_vector_store_collection_is_refused(
    tmp_path, precomputed_minilm, small_adaptor_dir, scifact
):
    base = ProviderEmbedding(provider=precomputed_minilm)
    folder = tmp_path / "db"
    collection = chromadb.PersistentClient(str(folder)).get_or_create_collection("docs")
    nodes = [TextNode(id_=i, text=t) for i, t in zip(scifact.corpus_ids[:20], scifact.corpus_texts)]
    VectorStoreIndex(
        nodes,
        storage_context=StorageContext.from_defaults(
            vector_store=ChromaVectorStore(chroma_collection=collection)
        ),
        embed_model=base,
    )
    with pytest.raises(InputError, match=_refusal(folder)):
        LlamaIndexStore(small_adaptor_dir, "docs", persist_dir=str(folder))
    assert _collections(folder) == ["docs"]
