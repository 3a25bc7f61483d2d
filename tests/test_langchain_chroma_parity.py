"""LangChain ``MatryoshkaVectorStore`` beside ``langchain_chroma.Chroma`` (cosine space, high-recall HNSW) on the
same SciFact documents and real all-MiniLM-L6-v2 vectors, both in a database folder or both in memory: ``get``,
``update_document(s)``, relevance scores by vector, ``where_document``, ``reset_collection`` and
``delete_collection`` give what Chroma gives."""

from __future__ import annotations

import math
import uuid

import pytest
from langchain_chroma import Chroma
from langchain_core.documents import Document

from langchain_matryoshka_rag import MatryoshkaVectorStore, ProviderEmbeddings
from matryoshka_rag.errors import InputError
from tests.framework_checks import scored_slice

N = 60
CHROMA_HNSW = {"hnsw": {"space": "cosine", "ef_construction": 200, "ef_search": 400}}


@pytest.fixture(scope="module")
def base(precomputed_minilm) -> ProviderEmbeddings:
    return ProviderEmbeddings(provider=precomputed_minilm)


@pytest.fixture(params=["embedded", "memory"])
def pair(request, tmp_path, base, small_adaptor_dir, scifact) -> tuple[MatryoshkaVectorStore, Chroma]:
    """Our store and Chroma holding the same N documents, the last five without metadata; each in its own
    database folder, or both in the process's in-memory Chroma (under names of their own)."""
    ids, texts = scifact.corpus_ids[:N], scifact.corpus_texts[:N]
    metadatas = [{"group": i % 4} if i < N - 5 else {} for i in range(N)]
    tag = uuid.uuid4().hex[:8]
    folders = {
        side: {"persist_directory": str(tmp_path / side)} if request.param == "embedded" else {}
        for side in ("ours", "chroma")
    }
    ours = MatryoshkaVectorStore(f"ours{tag}", base, adaptor=small_adaptor_dir, **folders["ours"])
    chroma = Chroma(f"chroma{tag}", base, collection_configuration=CHROMA_HNSW, **folders["chroma"])
    for store in (ours, chroma):
        store.add_texts(texts, metadatas, ids=ids)
    return ours, chroma


def test_get_as_chroma(pair, scifact) -> None:
    ours, chroma = pair
    ids = scifact.corpus_ids
    for kwargs in (
        {},
        {"ids": [ids[3], ids[1], "not-there"]},
        {"ids": ids[2]},
        {"where": {"group": 1}},
        {"limit": 5, "offset": 3},
        {"where": {"group": 2}, "limit": 4, "offset": 2},
        {"include": ["documents"]},
        {"include": ["metadatas"], "where_document": {"$contains": "cell"}},
        {"where_document": {"$not_contains": "the"}, "offset": 1},
        {"where_document": {"$or": [{"$contains": "cancer"}, {"$contains": "DNA"}]}, "limit": 3},
        {"where": {"group": 0}, "where_document": {"$and": [{"$contains": "a"}, {"$not_contains": "cell"}]}},
    ):
        assert ours.get(**kwargs) == chroma.get(**kwargs), kwargs
    assert len(ours.get(where_document={"$contains": "cell"})["ids"]) > 3  # the filters select something


def test_update_documents_as_chroma(pair, scifact) -> None:
    ours, chroma = pair
    ids, texts = scifact.corpus_ids, scifact.corpus_texts
    for store in pair:
        store.update_documents(
            [ids[0], "not-there"], [Document(page_content=texts[100], metadata={"new": "yes"})] * 2
        )
        store.update_document(ids[1], Document(page_content=texts[101], metadata={"group": 7}))
    assert ours.get() == chroma.get()
    assert ours.get(ids=[ids[0]])["metadatas"] == [{"group": 0, "new": "yes"}]  # merged, as Chroma does
    for text in (texts[100], texts[101]):
        assert [d.id for d in ours.similarity_search(text, k=3)] == [
            d.id for d in chroma.similarity_search(text, k=3)
        ]


def test_relevance_scores_by_vector_as_chroma(pair, base, scifact) -> None:
    ours, chroma = pair
    for question in scifact.query_texts[:3]:
        vector = base.embed_query(question)
        for kwargs in ({}, {"filter": {"group": 1}}, {"where_document": {"$contains": "cell"}}):
            found = ours.similarity_search_by_vector_with_relevance_scores(vector, k=5, **kwargs)
            expected = chroma.similarity_search_by_vector_with_relevance_scores(vector, k=5, **kwargs)
            assert [d for d, _ in found] == [d for d, _ in expected], kwargs
            assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=2e-3)


def test_where_document_search_as_chroma(pair, scifact) -> None:
    ours, chroma = pair
    question = scifact.query_texts[0]
    for kwargs in (
        {"where_document": {"$contains": "cell"}},
        {"where_document": {"$not_contains": "cell"}, "filter": {"group": 2}},
        {"where_document": {"$contains": "no document says this"}},
    ):
        assert ours.similarity_search(question, k=4, **kwargs) == chroma.similarity_search(
            question, k=4, **kwargs
        )
    found = ours.similarity_search_with_hits(question, k=2, where_document={"$contains": "cell"})
    assert {hit.stage for _, hit in found} == {"exact"}


def test_reset_collection_as_chroma(pair, scifact) -> None:
    ours, chroma = pair
    for store in pair:
        store.reset_collection()
    assert ours.get() == chroma.get() and ours.get()["ids"] == []
    for store in pair:
        store.add_texts(scifact.corpus_texts[:3], ids=scifact.corpus_ids[:3])
    assert ours.get() == chroma.get()


def test_delete_collection_as_chroma(pair, scifact) -> None:
    """After ``delete_collection`` both stores are gone from their databases and every call raises
    ``ValueError``; ``reset_collection`` then makes ours again, empty (``Chroma``'s raises, although its error
    names it)."""
    ours, chroma = pair
    text, first = scifact.corpus_texts[0], scifact.corpus_ids[0]
    for store in pair:
        store.delete_collection()
    names = {c.name for client in (ours.store.client, chroma._client) for c in client.list_collections()}
    assert not {n for n in names if n.startswith((ours.store.name, chroma._collection_name))}
    for call in (
        lambda store: store.add_texts([text], ids=["new"]),
        lambda store: store.similarity_search(text, k=2),
        lambda store: store.max_marginal_relevance_search(text, k=2),
        lambda store: store.get(),
        lambda store: store.get_by_ids([first]),
        lambda store: store.update_document(first, Document(page_content=text)),
        lambda store: store.delete([first]),
        lambda store: store.delete_collection(),
    ):
        for store in pair:
            with pytest.raises(ValueError):
                call(store)
    with pytest.raises(ValueError, match="Use `reset_collection` to re-create"):
        chroma.reset_collection()
    ours.reset_collection()
    assert ours.get()["ids"] == []
    ours.add_texts(scifact.corpus_texts[:3], ids=scifact.corpus_ids[:3])
    assert sorted(ours.get()["ids"]) == sorted(scifact.corpus_ids[:3])
    assert ours.similarity_search(scifact.corpus_texts[1], k=1)[0].id == scifact.corpus_ids[1]


def test_refusals_are_named(pair) -> None:
    ours, _ = pair
    with pytest.raises(
        InputError, match=r"where_document \{'\$regex': 'c.ll'\}: this store applies \$contains"
    ):
        ours.get(where_document={"$regex": "c.ll"})
    with pytest.raises(InputError, match="where_document"):
        ours.similarity_search_by_vector([0.1] * 384, where_document={"$contains": 3})
    with pytest.raises(InputError, match=r"include \['embeddings'\]: get returns documents and metadatas"):
        ours.get(include=["embeddings"])
    with pytest.raises(InputError, match="offset must be an integer >= 0"):
        ours.get(offset=-1)


@pytest.mark.filterwarnings("ignore:Relevance scores must be between 0 and 1")  # Chroma's l2 ones are not
def test_from_chroma_converts_without_touching_the_original(tmp_path, base, scifact) -> None:
    """The store converted from a collection in l2 space (Chroma's default) keeps that space, so its scores
    are Chroma's."""
    folder, ids, texts = tmp_path / "db", scifact.corpus_ids[:200], scifact.corpus_texts[:200]
    configuration = {"hnsw": {**CHROMA_HNSW["hnsw"], "space": "l2"}}
    chroma = Chroma("docs", base, persist_directory=str(folder), collection_configuration=configuration)
    chroma.add_texts(texts, [{"group": i % 4} for i in range(200)], ids=ids)
    before = chroma.get()
    store = MatryoshkaVectorStore.from_chroma(
        "docs", base, str(folder), out=tmp_path / "small", sample=50, max_steps=20, progress=False
    )
    assert chroma.get() == before and store.get() == before  # nothing re-embedded, the original only read
    question = scifact.query_texts[0]
    for method in ("similarity_search_with_score", "similarity_search_with_relevance_scores"):
        found, expected = (getattr(s, method)(question, k=5) for s in (store, chroma))
        assert [d.id for d, _ in found] == [d.id for d, _ in expected], method
        assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=4e-3), method


THRESHOLDS = {"l2": 0.2, "cosine": 0.35, "ip": 0.35}  # relevance scores that keep some hits and drop others


def _scores(store, question: str, vector: list[float], threshold: float) -> dict[str, list]:
    """What `store` gives for `question`: (id, score) of each scored search (k=8) and the ids a
    score_threshold retriever keeps."""
    found = {
        method: [(d.id, s) for d, s in getattr(store, method)(query, k=8)]
        for method, query in (
            ("similarity_search_with_score", question),
            ("similarity_search_with_relevance_scores", question),
            ("similarity_search_by_vector_with_relevance_scores", vector),
        )
    }
    search = {"k": 8, "score_threshold": threshold}
    retriever = store.as_retriever(search_type="similarity_score_threshold", search_kwargs=search)
    return found | {"kept": [d.id for d in retriever.invoke(question)]}


def _assert_scores(found: dict[str, list], expected: dict[str, list], port=None) -> None:
    for method in found.keys() - {"kept"}:
        assert [i for i, _ in found[method]] == [i for i, _ in expected[method]], method
        ported = [(port or {}).get(method, lambda s: s)(s) for _, s in expected[method]]
        assert [s for _, s in found[method]] == pytest.approx(ported, abs=4e-3), method
    assert found["kept"] == expected["kept"]


@pytest.mark.filterwarnings("ignore:Relevance scores must be between 0 and 1")  # Chroma's l2 ones are not
def test_score_table_as_langchain_chroma(tmp_path, base, small_adaptor_dir, scifact) -> None:
    """The README's table: in each space (for l2, Chroma's default collection) distances, relevance scores and a
    score_threshold retriever give what Chroma gives; our default store beside Chroma's default collection is
    the port (distance ``d / 2``, relevance ``1 - (1 - r) / sqrt(2)``) and its worked example (threshold 0.2
    there, 0.434 here)."""
    ids, texts, questions = scored_slice(scifact)
    stores = {}
    for space in ("l2", "cosine", "ip"):
        hnsw = None if space == "l2" else {"hnsw": {**CHROMA_HNSW["hnsw"], "space": space}}
        ours, chroma = str(tmp_path / space / "ours"), str(tmp_path / space / "chroma")
        stores[space] = (
            MatryoshkaVectorStore(
                "scores", base, persist_directory=ours, adaptor=small_adaptor_dir, space=space
            ),
            Chroma("scores", base, persist_directory=chroma, collection_configuration=hnsw),
        )
    default = MatryoshkaVectorStore(
        "default", base, persist_directory=str(tmp_path / "default"), adaptor=small_adaptor_dir
    )
    for store in (default, *(s for pair in stores.values() for s in pair)):
        store.add_texts(texts, ids=ids)
    port = {  # Chroma's ..._by_vector_with_relevance_scores gives distances
        "similarity_search_with_score": lambda d: d / 2,
        "similarity_search_by_vector_with_relevance_scores": lambda d: d / 2,
        "similarity_search_with_relevance_scores": lambda r: 1 - (1 - r) / math.sqrt(2),
    }
    kept = dict.fromkeys(stores, 0)
    for question in questions:
        vector = base.embed_query(question)
        for space, (ours, chroma) in stores.items():
            expected = _scores(chroma, question, vector, THRESHOLDS[space])
            _assert_scores(_scores(ours, question, vector, THRESHOLDS[space]), expected)
            kept[space] += len(expected["kept"])
        _assert_scores(
            _scores(default, question, vector, 0.434), _scores(stores["l2"][1], question, vector, 0.2), port
        )
    assert all(0 < n < 8 * len(questions) for n in kept.values()), (
        kept
    )  # the thresholds keep some, drop others


def test_relevance_score_fn_as_chroma(tmp_path, base, small_adaptor_dir, scifact) -> None:
    ids, texts, questions = scored_slice(scifact)

    def relevance(distance: float) -> float:
        return 1.0 / (1.0 + distance)

    ours = MatryoshkaVectorStore.from_texts(
        texts, base, ids=ids, adaptor=small_adaptor_dir, space="l2", relevance_score_fn=relevance
    )
    chroma = Chroma.from_texts(texts, base, ids=ids, relevance_score_fn=relevance)  # its default: l2
    for question in questions[:3]:
        found, expected = (s.similarity_search_with_relevance_scores(question, k=5) for s in (ours, chroma))
        assert [d.id for d, _ in found] == [d.id for d, _ in expected]
        assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=4e-3)
    assert ours._select_relevance_score_fn() is relevance
    with pytest.raises(
        InputError, match="relevance_score_fn must map a distance to a relevance score, got str"
    ):
        MatryoshkaVectorStore("refused", base, adaptor=small_adaptor_dir, relevance_score_fn="cosine")
