"""LlamaIndex ``MatryoshkaVectorStore`` on real all-MiniLM-L6-v2 vectors (precomputed SciFact), embedded and
against a real ``chroma run`` server: ``VectorStoreIndex`` and ``IngestionPipeline`` over it, whole nodes and
``ref_doc_id`` deletion, filters, MMR, async, and bad input."""

from __future__ import annotations

import asyncio
import math
import uuid
from pathlib import Path

import chromadb
import numpy as np
import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.retrievers import RecursiveRetriever
from llama_index.core.schema import IndexNode, MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.types import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.vector_stores.chroma import ChromaVectorStore

from llama_index.embeddings.matryoshka_rag import ProviderEmbedding
from llama_index.vector_stores.matryoshka_rag import MatryoshkaVectorStore, to_chroma_where
from matryoshka_rag.errors import AdaptorMismatchError, InputError
from tests.framework_checks import scored_slice

N = 120


def _name() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["embedded", "server"])
def location(request, tmp_path) -> dict:
    """Constructor arguments naming where the store lives: a folder, or the session's `chroma run` server."""
    if request.param == "embedded":
        return {"persist_dir": str(tmp_path / "db")}
    server = request.getfixturevalue("chroma_server_session")
    return {"host": "127.0.0.1", "port": server.port}


@pytest.fixture(scope="module")
def base(precomputed_minilm) -> ProviderEmbedding:
    """all-MiniLM-L6-v2 as a LlamaIndex embedding (its precomputed SciFact vectors)."""
    return ProviderEmbedding(provider=precomputed_minilm)


def make_nodes(scifact, n: int = N) -> list[TextNode]:
    """SciFact documents as nodes: `group` 0..3, a title and a source document `doc-<i % 10>` each."""
    return [
        TextNode(
            id_=scifact.corpus_ids[i],
            text=scifact.corpus_texts[i],
            metadata={"group": i % 4, "title": f"paper {i}"},
            excluded_embed_metadata_keys=["group", "title"],  # the embedded text is the document's
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc-{i % 10}")},
        )
        for i in range(n)
    ]


@pytest.fixture
def index(location, base, small_adaptor_dir: Path, scifact) -> VectorStoreIndex:
    store = MatryoshkaVectorStore(small_adaptor_dir, _name(), **location)
    return VectorStoreIndex(
        make_nodes(scifact),
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=base,
    )


def test_index_retriever_equals_the_core_store_query(index, base, scifact) -> None:
    store = index.vector_store
    question = scifact.query_texts[0]
    core = store.store.query(np.array(base.get_query_embedding(question)), k=5)
    found = index.as_retriever(similarity_top_k=5).retrieve(question)
    assert [n.node.node_id for n in found] == [h.id for h in core]
    assert [n.score for n in found] == pytest.approx([h.score for h in core])
    original = {node.node_id: node for node in make_nodes(scifact)}
    for hit in found:  # whole nodes back, with no score keys for the LLM to read
        node = original[hit.node.node_id]
        assert hit.node.metadata == node.metadata and hit.node.get_content() == node.get_content()
        assert hit.node.ref_doc_id == node.ref_doc_id
        assert "score" not in hit.node.get_content(MetadataMode.LLM)
    result = store.query(
        VectorStoreQuery(query_embedding=base.get_query_embedding(question), similarity_top_k=5)
    )
    assert result.hits == core and result.similarities == [h.score for h in core]
    assert {h.stage for h in result.hits} <= {"small+rerank", "widened"} and set(core[0].scores) == {64, 384}


def _side_by_side(store, base, nodes, **index_kwargs) -> tuple[VectorStoreIndex, VectorStoreIndex]:
    """Indexes over `store` and over a ChromaVectorStore (exact-ish HNSW, cosine) of the same nodes."""
    configuration = {"hnsw": {"space": "cosine", "ef_construction": 200, "ef_search": 400}}
    collection = chromadb.EphemeralClient().create_collection(_name(), configuration=configuration)
    return tuple(
        VectorStoreIndex(
            nodes,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=base,
            **index_kwargs,
        )
        for vector_store in (store, ChromaVectorStore(chroma_collection=collection))
    )


def test_index_keeping_node_ids_retrieves_as_chroma(tmp_path, base, small_adaptor_dir, scifact) -> None:
    store = MatryoshkaVectorStore(small_adaptor_dir, _name(), persist_dir=str(tmp_path))
    ours, chroma = _side_by_side(store, base, make_nodes(scifact), store_nodes_override=True)
    for question in scifact.query_texts[:3]:
        found = [n.node.node_id for n in ours.as_retriever(similarity_top_k=5).retrieve(question)]
        assert found == [n.node.node_id for n in chroma.as_retriever(similarity_top_k=5).retrieve(question)]


def test_recursive_retriever_over_an_index_node_as_chroma(tmp_path, base, small_adaptor_dir, scifact) -> None:
    question = scifact.query_texts[1]
    store = MatryoshkaVectorStore(small_adaptor_dir, _name(), persist_dir=str(tmp_path))
    found = []
    for index in _side_by_side(store, base, make_nodes(scifact)):
        index.insert_nodes([IndexNode(id_="summary", text=question, index_id="details")])
        details = TextNode(id_="details", text="the details behind the summary")
        retriever = RecursiveRetriever(
            "vector",
            retriever_dict={"vector": index.as_retriever(similarity_top_k=4)},
            node_dict={"details": details},
        )
        found.append([n.node.node_id for n in retriever.retrieve(question)])
    assert found[0] == found[1] and found[0][0] == "details" and len(found[0]) == 4


CUTOFFS = {
    "l2": 0.35,
    "cosine": 0.5,
}  # ChromaVectorStore scores exp(-distance) that keep some hits, drop others
SCALES = {"l2": 2.0, "cosine": 1.0}  # unit vectors: distance = scale * (1 - cosine)


@pytest.mark.parametrize("space", ["l2", "cosine"])
def test_chroma_scores_keep_what_chroma_vector_store_keeps(space, base, small_adaptor_dir, scifact) -> None:
    """``score="chroma"`` scores nodes as ``ChromaVectorStore`` does in a collection of the store's space ("l2":
    its default collection), so a ``SimilarityPostprocessor`` keeps the same nodes; the default cosines are the
    README's port of those scores, ``1 + ln(score) / scale``, and keep the same nodes at the ported cutoff."""
    ids, texts, questions = scored_slice(scifact)
    nodes = [TextNode(id_=i, text=text) for i, text in zip(ids, texts)]
    cosine = MatryoshkaVectorStore(small_adaptor_dir, _name(), space=space)
    configuration = (
        None if space == "l2" else {"hnsw": {"space": space, "ef_construction": 200, "ef_search": 400}}
    )
    collection = chromadb.EphemeralClient().create_collection(_name(), configuration=configuration)
    indexes = [
        VectorStoreIndex(
            nodes, storage_context=StorageContext.from_defaults(vector_store=s), embed_model=base
        )
        for s in (cosine, ChromaVectorStore(chroma_collection=collection))
    ]
    scored = MatryoshkaVectorStore(store=cosine.store, score="chroma")
    indexes.insert(1, VectorStoreIndex.from_vector_store(scored, embed_model=base))
    keep = SimilarityPostprocessor(similarity_cutoff=CUTOFFS[space]).postprocess_nodes
    keep_ported = SimilarityPostprocessor(similarity_cutoff=1 + math.log(CUTOFFS[space]) / SCALES[space])

    def kept_ids(found) -> list[str]:
        return [n.node.node_id for n in found]

    kept, cosine_cut_differs = 0, False
    for question in questions:
        ours, ours_chroma, chroma = (i.as_retriever(similarity_top_k=8).retrieve(question) for i in indexes)
        assert kept_ids(ours_chroma) == kept_ids(chroma) == kept_ids(ours)
        assert [n.score for n in ours_chroma] == pytest.approx([n.score for n in chroma], abs=2e-3)
        assert [n.score for n in ours] == pytest.approx(
            [1 + math.log(n.score) / SCALES[space] for n in chroma], abs=2e-3
        )
        assert kept_ids(keep(ours_chroma)) == kept_ids(keep(chroma))
        assert kept_ids(keep_ported.postprocess_nodes(ours)) == kept_ids(keep(chroma))
        kept += len(keep(chroma))
        cosine_cut_differs |= kept_ids(keep(ours)) != kept_ids(keep(chroma))
    assert 0 < kept < 8 * len(questions) and cosine_cut_differs  # the cutoff cuts; cosines need the port
    with pytest.raises(InputError, match="score must be one of 'cosine', 'chroma'; got 'exp'"):
        MatryoshkaVectorStore(store=cosine.store, score="exp")


def test_from_chroma_converts_a_chroma_vector_store_collection(tmp_path, base, scifact) -> None:
    collection = chromadb.PersistentClient(str(tmp_path / "db")).create_collection("docs")
    chroma = VectorStoreIndex(
        make_nodes(scifact),
        storage_context=StorageContext.from_defaults(
            vector_store=ChromaVectorStore(chroma_collection=collection)
        ),
        embed_model=base,
    )
    store = MatryoshkaVectorStore.from_chroma(
        "docs",
        tmp_path / "db",
        out=tmp_path / "small",
        sample=50,
        max_steps=20,
        progress=False,
        score="chroma",
    )
    nodes = store.get_nodes()
    assert [n.node_id for n in nodes] == collection.get()["ids"]  # nothing re-embedded, the original read
    original = {node.node_id: node for node in make_nodes(scifact)}
    assert all(n.get_content() == original[n.node_id].get_content() for n in nodes)
    assert all(n.ref_doc_id == original[n.node_id].ref_doc_id for n in nodes)
    index = VectorStoreIndex.from_vector_store(store, embed_model=base)
    question = scifact.query_texts[2]
    found, expected = (i.as_retriever(similarity_top_k=5).retrieve(question) for i in (index, chroma))
    assert [n.node.node_id for n in found] == [n.node.node_id for n in expected]
    # the store kept the collection's l2 space: ChromaVectorStore's scores
    assert [n.score for n in found] == pytest.approx([n.score for n in expected], abs=4e-3)


def test_from_vector_store_insert_and_delete_ref_doc(location, base, small_adaptor_dir, scifact) -> None:
    store = MatryoshkaVectorStore(small_adaptor_dir, _name(), **location)
    index = VectorStoreIndex.from_vector_store(store, embed_model=base)
    index.insert_nodes(make_nodes(scifact, 30))
    assert store.store.count() == 30
    index.delete_ref_doc("doc-3")
    assert store.store.count() == 27 and all(n.ref_doc_id != "doc-3" for n in store.get_nodes())
    store.delete("doc-none")  # no such document: nothing happens
    store.delete_nodes([scifact.corpus_ids[0], "not-there"])
    assert store.store.count() == 26
    assert [n.node_id for n in store.get_nodes([scifact.corpus_ids[1], "nope", scifact.corpus_ids[2]])] == [
        scifact.corpus_ids[1],
        scifact.corpus_ids[2],
    ]
    store.clear()
    assert store.store.count() == 0 and store.get_nodes() == []


def test_ingestion_pipeline_upserts(tmp_path, base, small_adaptor_dir, scifact) -> None:
    store = MatryoshkaVectorStore(small_adaptor_dir, "pipeline", persist_dir=str(tmp_path))
    pipeline = IngestionPipeline(transformations=[base], vector_store=store)
    pipeline.run(nodes=make_nodes(scifact, 20))
    pipeline.run(nodes=make_nodes(scifact, 20))  # re-ingest: upsert, no duplicates
    assert store.store.count() == 20
    reopened = MatryoshkaVectorStore(
        collection_name="pipeline", persist_dir=str(tmp_path)
    )  # adaptor recorded
    node = reopened.get_nodes([scifact.corpus_ids[7]])[0]
    assert node.get_content() == scifact.corpus_texts[7] and node.metadata == {"group": 3, "title": "paper 7"}
    assert node.source_node.node_id == "doc-7"


def test_filters(index, base, scifact) -> None:
    store, question = index.vector_store, scifact.query_texts[0]
    embedding = base.get_query_embedding(question)
    either = MetadataFilters(
        filters=[
            MetadataFilter(key="group", value=[1, 2], operator=FilterOperator.IN),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="group", value=0),
                    MetadataFilter(key="title", value="paper 0", operator=FilterOperator.NE),
                ]
            ),
        ],
        condition=FilterCondition.OR,
    )
    assert to_chroma_where(either) == {
        "$or": [
            {"group": {"$in": [1, 2]}},
            {"$and": [{"group": {"$eq": 0}}, {"title": {"$ne": "paper 0"}}]},
        ]
    }
    found = store.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=8, filters=either))
    assert len(found.nodes) == 8 and all(n.metadata["group"] != 3 for n in found.nodes)
    retriever = index.as_retriever(
        similarity_top_k=4, filters=MetadataFilters(filters=[MetadataFilter(key="group", value=3)])
    )
    assert all(n.node.metadata["group"] == 3 for n in retriever.retrieve(question))
    by_doc = store.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=50, doc_ids=["doc-4"]))
    assert len(by_doc.nodes) == N // 10 and {n.ref_doc_id for n in by_doc.nodes} == {"doc-4"}


def test_fewer_matches_than_k_returns_them(index, base, location, small_adaptor_dir, scifact) -> None:
    embedding = base.get_query_embedding(scifact.query_texts[0])
    rare = MetadataFilters(filters=[MetadataFilter(key="title", value=["paper 3", "paper 5"], operator="in")])
    found = index.vector_store.query(
        VectorStoreQuery(query_embedding=embedding, similarity_top_k=10, filters=rare)
    )
    assert sorted(n.metadata["title"] for n in found.nodes) == ["paper 3", "paper 5"]
    empty = MatryoshkaVectorStore(small_adaptor_dir, _name(), **location)
    assert empty.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=3)).nodes == []


def test_mmr_prefers_diverse_nodes(index, base, scifact) -> None:
    store, embedding = index.vector_store, base.get_query_embedding(scifact.query_texts[0])
    top = store.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=1)).nodes[0]
    copy = TextNode(
        id_="copy-of-top", text=top.get_content(), embedding=base.get_text_embedding(top.get_content())
    )
    store.add([copy])
    plain = store.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=2)).ids
    assert set(plain) == {top.node_id, "copy-of-top"}
    mmr = store.query(
        VectorStoreQuery(query_embedding=embedding, similarity_top_k=3, mode=VectorStoreQueryMode.MMR),
        mmr_threshold=0.5,
    )
    # LlamaIndex's MMR discounts each pick by its overlap with the pick before it: the second is never the copy
    assert len(mmr.ids) == 3 and mmr.ids[0] in plain and mmr.ids[1] not in plain
    retriever = index.as_retriever(similarity_top_k=2, vector_store_query_mode="mmr")
    assert len(retriever.retrieve(scifact.query_texts[0])) == 2


def test_async_calls_leave_the_event_loop_running(index, base, scifact) -> None:
    store, embedding = index.vector_store, base.get_query_embedding(scifact.query_texts[0])

    async def loop_steps_during(make_call) -> tuple[int, object]:
        """How many times another task ran while the call was awaited (0 if the call blocked the loop)."""
        steps, done = 0, False

        async def other_task():
            nonlocal steps
            while not done:
                steps += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(other_task())
        await asyncio.sleep(0)
        before = steps
        result = await make_call()
        during, done = steps - before, True
        await task
        return during, result

    async def scenario():
        query = VectorStoreQuery(query_embedding=embedding, similarity_top_k=3)
        return [
            await loop_steps_during(lambda: store.aquery(query)),
            await loop_steps_during(lambda: store.aget_nodes([scifact.corpus_ids[0]])),
            await loop_steps_during(lambda: store.adelete("doc-1")),
            await loop_steps_during(lambda: store.adelete_nodes([scifact.corpus_ids[2]])),
            await loop_steps_during(lambda: store.async_add([_embedded(base, scifact, 1)])),
        ]

    outcomes = asyncio.run(scenario())
    assert all(during > 0 for during, _ in outcomes)
    assert len(outcomes[0][1].nodes) == 3 and outcomes[1][1][0].node_id == scifact.corpus_ids[0]
    assert store.store.count() == N - N // 10 - 1 + 1  # doc-1's nodes and node 2 gone, node 1 back


def _embedded(base, scifact, i: int) -> TextNode:
    node = make_nodes(scifact, i + 1)[i]
    node.embedding = base.get_text_embedding(node.get_content())
    return node


def test_bad_input_is_named(index, base, location, small_adaptor_dir, scifact) -> None:
    store = index.vector_store
    embedding = base.get_query_embedding(scifact.query_texts[0])
    with pytest.raises(InputError, match=r"node 'n1' has no embedding \(1 of 1 nodes\)"):
        store.add([TextNode(id_="n1", text="x")])
    with pytest.raises(AdaptorMismatchError, match="gives 10-dim vectors but the adaptor's base dim is 384"):
        store.add([TextNode(id_="n1", text="x", embedding=[0.1] * 10)])
    with pytest.raises(AdaptorMismatchError, match="gives 12-dim vectors but the adaptor's base dim is 384"):
        store.query(VectorStoreQuery(query_embedding=[0.1] * 12, similarity_top_k=2))
    node = _embedded(base, scifact, 0)
    with pytest.raises(InputError, match="repeated in the batch"):
        store.add([node, node])
    for k in (0, -2):
        with pytest.raises(InputError, match="similarity_top_k must be an integer >= 1"):
            store.query(VectorStoreQuery(query_embedding=embedding, similarity_top_k=k))
    text_match = MetadataFilter(key="title", value="paper", operator=FilterOperator.TEXT_MATCH)
    with pytest.raises(
        InputError, match="filter 'title' text_match 'paper': Chroma has no 'text_match' operator"
    ):
        store.query(
            VectorStoreQuery(query_embedding=embedding, filters=MetadataFilters(filters=[text_match]))
        )
    negated = MetadataFilters(filters=[MetadataFilter(key="group", value=1)], condition=FilterCondition.NOT)
    with pytest.raises(InputError, match="condition 'not'"):
        to_chroma_where(negated)
    with pytest.raises(InputError, match="'group' == None"):
        to_chroma_where(MetadataFilters(filters=[MetadataFilter(key="group", value=None)]))
    with pytest.raises(InputError, match="'hybrid' is not supported"):
        store.query(VectorStoreQuery(query_embedding=embedding, mode=VectorStoreQueryMode.HYBRID))
    assert store.store.count() == N  # nothing was written by the bad calls
