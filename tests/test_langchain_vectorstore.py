"""LangChain ``MatryoshkaVectorStore``: langchain-tests' standard suites (embedded and against a real
``chroma run`` server), the same results as the core store on real all-MiniLM-L6-v2 vectors, MMR, async,
the indexing API, and bad input."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.indexing import InMemoryRecordManager, index
from langchain_tests.integration_tests import RetrieversIntegrationTests, VectorStoreIntegrationTests

from langchain_matryoshka_rag import MatryoshkaVectorStore, ProviderEmbeddings
from matryoshka_rag.errors import AdaptorMismatchError, InputError
from matryoshka_rag.store.store import MatryoshkaStore


def _name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["embedded", "server"])
def location(request, tmp_path) -> dict:
    """Constructor arguments naming where the store lives: a folder, or the session's `chroma run` server."""
    if request.param == "embedded":
        return {"persist_directory": str(tmp_path / "db")}
    server = request.getfixturevalue("chroma_server_session")
    return {"host": "127.0.0.1", "port": server.port}


# -- langchain-tests standard suites -------------------------------------------------------------------------


@pytest.fixture
def fake_store(location, fake_embedding_adaptor):
    """An empty store over the suite's 6-dim `DeterministicFakeEmbedding` (adaptor dims 3 -> 6)."""
    store = MatryoshkaVectorStore(
        _name(),
        VectorStoreIntegrationTests.get_embeddings(),
        adaptor=fake_embedding_adaptor,
        small_dim=3,
        large_dim=6,
        **location,
    )
    yield store
    store.store.clear()


@pytest.mark.asyncio  # the suite's async tests; pyproject does not set asyncio_mode=auto
@pytest.mark.filterwarnings("ignore:.*is not an async function:pytest.PytestWarning")
class TestVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, fake_store):
        return fake_store


@pytest.mark.asyncio
@pytest.mark.filterwarnings("ignore:.*is not an async function:pytest.PytestWarning")
class TestRetrieverStandard(RetrieversIntegrationTests):
    """``as_retriever(search_kwargs={"k": k})`` of a store holding five texts; `k` is the retriever's."""

    @pytest.fixture(autouse=True)
    def _store(self, fake_store) -> None:
        fake_store.add_texts(["alpha", "beta", "gamma", "delta", "epsilon"])
        self.store = fake_store

    @property
    def retriever_constructor(self):
        return lambda k=4: self.store.as_retriever(search_kwargs={"k": k})

    @property
    def retriever_query_example(self) -> str:
        return "beta"


# -- real vectors ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base(precomputed_minilm) -> ProviderEmbeddings:
    """all-MiniLM-L6-v2 as LangChain embeddings (its precomputed SciFact vectors)."""
    return ProviderEmbeddings(provider=precomputed_minilm)


@pytest.fixture(scope="module")
def corpus(scifact):
    """200 SciFact documents: ids, texts, metadatas (`group` 0..3)."""
    n = 200
    return scifact.corpus_ids[:n], scifact.corpus_texts[:n], [{"group": i % 4} for i in range(n)]


@pytest.fixture
def filled(location, base, small_adaptor_dir: Path, corpus) -> MatryoshkaVectorStore:
    ids, texts, metadatas = corpus
    store = MatryoshkaVectorStore(_name(), base, adaptor=small_adaptor_dir, small_dim=64, **location)
    assert store.add_texts(texts, metadatas, ids=ids) == ids
    return store


def test_results_equal_the_core_store_query(filled, base, corpus, scifact) -> None:
    ids, texts, metadatas = corpus
    question = scifact.query_texts[0]
    core = filled.store.query(np.array(base.embed_query(question)), k=5)
    found = filled.similarity_search_with_hits(question, k=5)
    assert [d.id for d, _ in found] == [h.id for h in core] and [h for _, h in found] == core
    docs = filled.similarity_search(question, k=5)
    assert [d.id for d in docs] == [h.id for h in core]
    assert all(d.metadata == metadatas[ids.index(d.id)] for d in docs)  # as stored: no score keys
    assert [d.page_content for d in docs] == [texts[ids.index(h.id)] for h in core]
    scored = filled.similarity_search_with_score(question, k=5)
    assert [s for _, s in scored] == pytest.approx([1 - h.score for h in core])
    relevance = filled.similarity_search_with_relevance_scores(question, k=5)
    assert [s for _, s in relevance] == pytest.approx([h.score for h in core])
    assert found[0][1].stage and set(found[0][1].scores) == {64, 384}
    by_vector = filled.similarity_search_by_vector(base.embed_query(question), k=5)
    assert [d.id for d in by_vector] == [h.id for h in core]


def test_as_retriever_k_and_filter(filled, corpus) -> None:
    ids, texts, _ = corpus
    retriever = filled.as_retriever(search_kwargs={"k": 3, "filter": {"group": 1}})
    found = retriever.invoke(texts[5])
    assert [d.id for d in found][0] == ids[5] and len(found) == 3
    assert all(d.metadata["group"] == 1 for d in found)
    assert len(filled.as_retriever(search_kwargs={"k": 7}).invoke(texts[5])) == 7


def test_fewer_matches_than_k_returns_them(
    filled, corpus, location, base, small_adaptor_dir, scifact
) -> None:
    ids, texts, _ = corpus
    filled.add_texts([scifact.corpus_texts[300]], [{"group": 99}], ids=["rare-1"])
    assert [d.id for d in filled.similarity_search(texts[0], k=10, filter={"group": 99})] == ["rare-1"]
    assert len(filled.similarity_search(texts[0], k=500)) == len(ids) + 1
    empty = MatryoshkaVectorStore(_name(), base, adaptor=small_adaptor_dir, **location)
    assert empty.similarity_search(texts[0], k=3) == []


def test_mmr_prefers_diverse_documents(filled, corpus, scifact) -> None:
    ids, texts, _ = corpus
    question = scifact.query_texts[0]
    top = filled.similarity_search(question, k=1)[0]
    filled.add_texts([top.page_content], [top.metadata], ids=["copy-of-top"])  # the same vector as the top
    plain = [d.id for d in filled.similarity_search(question, k=2)]
    assert set(plain) == {top.id, "copy-of-top"}
    mmr = [d.id for d in filled.max_marginal_relevance_search(question, k=3, fetch_k=20, lambda_mult=0.5)]
    assert mmr[0] in plain and len(mmr) == 3 and len(set(mmr) & set(plain)) == 1  # one copy, then others
    same = filled.max_marginal_relevance_search(question, k=4, fetch_k=20, lambda_mult=1.0)
    assert [d.id for d in same] == [d.id for d in filled.similarity_search(question, k=4)]
    assert len(filled.as_retriever(search_type="mmr", search_kwargs={"k": 2}).invoke(question)) == 2


def test_delete_get_by_ids_and_reopen(tmp_path, base, small_adaptor_dir, corpus) -> None:
    ids, texts, metadatas = corpus
    docs = [Document(id=i, page_content=t, metadata=m) for i, t, m in zip(ids[:20], texts, metadatas)]
    store = MatryoshkaVectorStore.from_documents(
        docs, base, collection_name="docs", persist_directory=str(tmp_path), adaptor=small_adaptor_dir
    )
    store.delete([ids[0], "not-there"])
    store.delete(where={"group": 1})
    reopened = MatryoshkaVectorStore("docs", base, persist_directory=str(tmp_path))  # adaptor recorded
    assert reopened.get_by_ids([ids[2], ids[0], ids[1], ids[2], "nope"]) == [docs[2]]
    assert reopened.store.count() == 20 - 1 - 5
    assert [d.id for d in reopened.similarity_search(texts[4], k=1)] == [ids[4]]


def test_indexing_api_with_a_record_manager(tmp_path, base, small_adaptor_dir, corpus) -> None:
    ids, texts, _ = corpus
    store = MatryoshkaVectorStore("indexed", base, persist_directory=str(tmp_path), adaptor=small_adaptor_dir)
    manager = InMemoryRecordManager("matryoshka/indexed")
    manager.create_schema()
    docs = [Document(page_content=t, metadata={"source": f"s{i % 5}"}) for i, t in enumerate(texts[:30])]
    assert (
        index(docs, manager, store, cleanup="full", source_id_key="source", key_encoder="sha256")["num_added"]
        == 30
    )
    again = index(docs[:10], manager, store, cleanup="full", source_id_key="source", key_encoder="sha256")
    assert again["num_skipped"] == 10 and again["num_deleted"] == 20 and store.store.count() == 10


class _GatedEmbeddings(Embeddings):
    """The base model, but each call waits until the event loop has run a step (set by the test): a call
    made on the event loop's thread would never see it and fails after 10 s."""

    def __init__(self, base: Embeddings) -> None:
        self.base, self.gate = base, threading.Event()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not self.gate.wait(10):
            raise TimeoutError("the event loop was blocked")
        return self.base.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def test_async_entry_points_do_not_block_the_event_loop(tmp_path, base, small_adaptor_dir, corpus) -> None:
    ids, texts, metadatas = corpus
    gated = _GatedEmbeddings(base)
    store = MatryoshkaVectorStore("async", gated, persist_directory=str(tmp_path), adaptor=small_adaptor_dir)

    async def call_then_open_the_gate(awaitable):
        gated.gate.clear()
        task = asyncio.ensure_future(awaitable)
        await asyncio.sleep(0.05)  # the loop runs while the call waits in its worker thread
        gated.gate.set()
        return await task

    async def scenario():
        docs = [Document(page_content=t, metadata=m) for t, m in zip(texts[:20], metadatas)]
        added = await call_then_open_the_gate(store.aadd_documents(docs, ids=ids[:20]))
        found = await call_then_open_the_gate(store.asimilarity_search(texts[2], k=2))
        scored = await call_then_open_the_gate(store.asimilarity_search_with_score(texts[2], k=2))
        mmr = await call_then_open_the_gate(store.amax_marginal_relevance_search(texts[2], k=2))
        return added, found, scored, mmr

    added, found, scored, mmr = asyncio.run(scenario())
    assert added == ids[:20] and found[0].id == ids[2] and scored[0][0].id == ids[2] and mmr[0].id == ids[2]
    assert asyncio.run(store.aget_by_ids([ids[2]]))[0].page_content == texts[2]


def test_bad_input_is_named(filled, corpus, location, small_adaptor_dir) -> None:
    ids, texts, metadatas = corpus
    with pytest.raises(InputError, match="2 texts but 1 metadatas"):
        filled.add_texts(texts[:2], metadatas[:1])
    with pytest.raises(InputError, match="2 texts but 3 ids"):
        filled.add_texts(texts[:2], ids=["a", "b", "c"])
    with pytest.raises(InputError, match=r"'a' is repeated in the batch \(positions 0 and 2\)"):
        filled.add_texts(texts[:3], ids=["a", "b", "a"])
    for k in (0, -1):
        with pytest.raises(InputError, match="k must be an integer >= 1"):
            filled.similarity_search(texts[0], k=k)
    with pytest.raises(InputError, match=r"where_document \{'\$regex': 'x'\}: this store applies \$contains"):
        filled.similarity_search(texts[0], where_document={"$regex": "x"})
    with pytest.raises(InputError, match=r"unsupported search arguments \['where_documents'\]"):
        filled.similarity_search(texts[0], where_documents={"$contains": "x"})
    with pytest.raises(AdaptorMismatchError, match="gives 10-dim vectors but the adaptor's base dim is 384"):
        MatryoshkaVectorStore(
            _name(), DeterministicFakeEmbedding(size=10), adaptor=small_adaptor_dir, **location
        ).add_texts(["x"])
    with pytest.raises(InputError, match="embedding_function"):
        MatryoshkaVectorStore(_name(), None, adaptor=small_adaptor_dir, **location)
    filled.delete(["not-there", "nor-this"])  # ignored, as Chroma does
    assert filled.store.count() == len(ids)
    assert isinstance(filled.store, MatryoshkaStore)
